"""Sparse encoders behind one contract; `create_encoder` and `load_encoder` pick by kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparseretr.encoders.base import SparseEncoder
from sparseretr.encoders.bm25 import BM25Encoder
from sparseretr.encoders.inference_free import InferenceFreeEncoder
from sparseretr.encoders.splade import SpladeEncoder
from sparseretr.index.errors import UserInputError

ENCODERS: dict[str, type[SparseEncoder]] = {
    SpladeEncoder.kind: SpladeEncoder,
    InferenceFreeEncoder.kind: InferenceFreeEncoder,
    BM25Encoder.kind: BM25Encoder,
}


def _cls(kind: str) -> type[SparseEncoder]:
    if kind not in ENCODERS:
        raise UserInputError(f"unknown encoder kind {kind!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[kind]


def create_encoder(kind: str, **options: Any) -> SparseEncoder:
    """A fresh encoder; options left as None fall back to the encoder's defaults."""
    return _cls(kind)(**{k: v for k, v in options.items() if v is not None})


def detect_kind(model: str | Path | None) -> str:
    """The encoder a model folder is for, so that users need not say it: "inference-free" when
    its sparseretr_config.json says so, when sentence-transformers wrote a query/document
    Router (modules.json), or when it ships an idf.json; else siamese "splade". Models that
    are not local folders (Hub ids, the embedded default) are siamese."""
    import json

    if model is None:
        return SpladeEncoder.kind
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return SpladeEncoder.kind
    config = folder / "sparseretr_config.json"
    if config.is_file():
        try:
            kind = json.loads(config.read_text(encoding="utf-8")).get("encoder")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind in (SpladeEncoder.kind, InferenceFreeEncoder.kind):
            return str(kind)
    modules = folder / "modules.json"
    if modules.is_file() and "Router" in modules.read_text(encoding="utf-8", errors="ignore"):
        return InferenceFreeEncoder.kind
    if (folder / "idf.json").is_file():
        return InferenceFreeEncoder.kind
    return SpladeEncoder.kind


def load_encoder(
    config: dict[str, Any], state_dir: Path | None = None, **overrides: Any
) -> SparseEncoder:
    """Rebuild the encoder an index was built with, from its manifest config and state folder."""
    return _cls(config.get("kind", "")).from_config(config, state_dir, **overrides)


__all__ = [
    "ENCODERS",
    "BM25Encoder",
    "InferenceFreeEncoder",
    "SparseEncoder",
    "SpladeEncoder",
    "create_encoder",
    "detect_kind",
    "load_encoder",
]
