"""The encoder contract: text in, CSR sparse vectors out, plus what it takes to rebuild it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from sparseretr.index.vectors import SparseVectors


class SparseEncoder(ABC):
    """Maps documents and queries into one vocabulary space where relevance is a dot product."""

    kind: ClassVar[str]
    vocab_size: int

    @abstractmethod
    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> SparseVectors: ...

    @abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> SparseVectors: ...

    @abstractmethod
    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Human-readable strings of term ids (explain output, highlighting)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able settings stored in the index manifest so the index can rebuild its encoder."""

    def fit(self, texts: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Learn corpus statistics (BM25 vocabulary, corpus IDF) before documents are encoded."""

    def save_state(self, folder: Path) -> None:  # noqa: B027 - optional hook
        """Write files beyond config() that rebuilding needs (idf.json, a vocabulary)."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any], state_dir: Path | None = None) -> Self: ...
