"""Service settings, read from the environment (prefix ``SPARSERETR_``) and an optional .env file.

Every limit that protects the service from a bad or hostile request lives here, so an operator can
tighten it without a code change. Limits can only be tightened below the API's hard ceilings
(k <= 1000), never loosened past them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sparseretr.fusion import DEFAULTS as FUSION_DEFAULTS

Mode = Literal["sparse", "dense", "hybrid", "bm25"]
Fusion = Literal["rrf", "convex"]
Normalization = Literal["minmax", "zscore"]

K_CEILING = 1000  # the API never returns more hits per query than this
QUERY_CHARS_CEILING = 2048  # the OpenAPI schema states these limits; settings may only lower them
BATCH_CEILING = 64


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPARSERETR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- index ---------------------------------------------------------------------------------
    index_path: Path = Field(Path("indexes/scifact"), description="index folder Engine.open reads")
    data_path: Path = Field(
        Path("../shared/data/beir/scifact"),
        description="BEIR folder or corpus JSONL used to build the index on first start",
    )
    build_if_missing: bool = Field(True, description="`serve` builds the index when it is missing")
    dense: bool = Field(True, description="load the dense side (modes dense/hybrid)")
    bm25: bool = Field(True, description="load the BM25 side (mode bm25)")
    device: str | None = Field(None, description="encoder device: cpu, cuda, cuda:1 (default auto)")
    writable: bool = Field(True, description="take writes (segmented indexes only)")
    refresh_interval_s: float = Field(
        1.0, ge=0.0, description="commit pending writes this often (0: only on request)"
    )
    shards: int = Field(
        0, ge=0, le=8,
        description="serve the index from this many Ray shard actors (0: in this process); the "
        "index needs as many segments (`sparseretr index split`; a first-start build splits "
        "itself); read-only",
    )  # fmt: skip
    ray_address: str | None = Field(
        None, description="Ray cluster for shards: auto, host:port, ray://... (default: local)"
    )
    load_in_background: bool = Field(
        True, description="answer /healthz while the engine loads; /readyz says 503 until done"
    )

    # --- network -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(None, description="required in X-API-Key for writes")
    log_level: str = "info"

    # --- request limits ------------------------------------------------------------------------
    max_k: int = Field(K_CEILING, ge=1, le=K_CEILING)
    max_query_chars: int = Field(2048, ge=1, le=QUERY_CHARS_CEILING)
    max_batch: int = Field(64, ge=1, le=BATCH_CEILING)
    max_body_bytes: int = Field(1 << 20, ge=1024)

    # --- search defaults (a request may override each) -----------------------------------------
    default_mode: Mode = "hybrid"
    # One source for fusion defaults (tuned on SciFact train): sparseretr.fusion.DEFAULTS.
    default_fusion: Fusion = FUSION_DEFAULTS["fusion"]
    default_alpha: float = Field(FUSION_DEFAULTS["alpha"], ge=0.0, le=1.0)
    default_rrf_k: int = Field(FUSION_DEFAULTS["rrf_k"], ge=1)
    default_normalization: Normalization = FUSION_DEFAULTS["normalization"]
    default_candidates: int = Field(FUSION_DEFAULTS["candidates"], ge=1)
    default_bm25_weight: float = Field(
        FUSION_DEFAULTS["bm25_weight"], ge=0.0, le=1.0,
        description="hybrid: the BM25 side's share where the index has one (0: sparse + dense)",
    )  # fmt: skip
    # Query-time pruning knobs (1 and 1: exact top-k); the README's sweep prices them.
    default_prune_alpha: float = Field(1.0, gt=0.0, le=1.0)
    default_term_fraction: float = Field(1.0, gt=0.0, le=1.0)
    snippet_chars: int = Field(240, ge=40, le=4000)
    max_matched_tokens: int = Field(32, ge=1, description="explain tokens returned per hit")

    # --- inference -----------------------------------------------------------------------------
    workers: int = Field(2, ge=1, le=256, description="threads running engine.search")
    microbatch_window_ms: float = Field(2.0, ge=0.0, le=1000.0)
    microbatch_max_size: int = Field(32, ge=1, le=BATCH_CEILING)
    max_queue: int = Field(1024, ge=1, description="queued single queries before 503 overloaded")

    @property
    def writes_need_key(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
