"""Dense query/document encoder (sentence-transformers), the model half of hybrid search.

Storage lives in index.dense; this module only turns text into L2-normalized float32 vectors,
so that the index's inner product is cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from sparseretr.encoders._torch import inference, pick_device, resolve_dtype
from sparseretr.index.errors import UserInputError
from sparseretr.models import DEFAULT_DENSE, resolve_model


class DenseEncoder:
    """A sentence-transformers model loaded from a local folder, never from the network."""

    kind = "dense"

    def __init__(
        self,
        model: str = DEFAULT_DENSE,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        max_length: int = 256,
        dtype: str | None = None,
    ) -> None:
        """dtype: "bfloat16"/"float16" runs the model under autocast (lossy, faster where the
        hardware has it: GPUs, CPUs with AVX512-BF16); None or "auto" keeps float32 on CPU.
        batch_size: None gives 16 texts per batch on CPU (less padding per length-sorted
        batch, and activations that stay in cache; see benchmarks/README.md) and 64 on GPU."""
        # Imported here: sentence-transformers takes seconds to import, and sparse-only users
        # (and `import sparseretr.engine`) should not pay for it.
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(device)
        if batch_size is None:
            batch_size = 16 if self.device.type == "cpu" else 64
        if batch_size < 1 or max_length < 1:
            raise UserInputError(
                f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}"
            )
        self.model_ref = str(model)
        path = resolve_model(model)  # ModelNotFoundError with the fix when it isn't available
        self.autocast = resolve_dtype(self.device, dtype)
        # resolve_model already gave a local folder; local_files_only keeps the loader from
        # consulting the Hub (HF_HUB_OFFLINE or not), so loading never touches the network.
        self.model = SentenceTransformer(str(path), device=str(self.device), local_files_only=True)
        self.model.max_seq_length = max_length
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """float32 [n, dim], each row of unit length (so inner product = cosine)."""
        if isinstance(texts, str):
            raise TypeError("pass a sequence of strings, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with inference(self.device, self.autocast):
            out = self.model.encode(
                texts,
                batch_size=batch_size or self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def config(self) -> dict[str, Any]:
        """Stored in dense.json so the query side rebuilds exactly the documents' encoder."""
        return {"kind": self.kind, "model": self.model_ref, "max_length": self.max_length}

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> Self:
        if config.get("kind", cls.kind) != cls.kind:
            raise UserInputError(f"not a dense encoder config: kind {config.get('kind')!r}")
        opts: dict[str, Any] = (
            {"max_length": config["max_length"]} if "max_length" in config else {}
        )
        return cls(config.get("model", DEFAULT_DENSE), **{**opts, **overrides})

    def __repr__(self) -> str:
        return f"DenseEncoder({self.model_ref!r}, dim={self.dim}, device={str(self.device)!r})"
