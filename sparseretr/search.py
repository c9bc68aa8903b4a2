"""Query-time pipeline over one index: text -> encoder -> sparse query -> index kernels -> hits."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparseretr.encoders import SparseEncoder, load_encoder
from sparseretr.index import SparseIndex
from sparseretr.index.vectors import SparseVectors


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    internal: int


class SparseSearcher:
    """An index with the encoder it was built with; loaded once, shared by callers."""

    def __init__(self, index: SparseIndex, encoder: SparseEncoder) -> None:
        if encoder.vocab_size != index.vocab_size:
            raise ValueError(
                f"encoder vocabulary ({encoder.vocab_size}) does not match the index "
                f"({index.vocab_size}): the index was built with another encoder"
            )
        self.index = index
        self.encoder = encoder
        self.last_timing: dict[str, float] = {}

    @classmethod
    def open(
        cls, path: str | Path, *, verify: bool = False, **encoder_overrides: Any
    ) -> SparseSearcher:
        index = SparseIndex.open(path, verify=verify)
        return cls(
            index, load_encoder(index.encoder_config, index.encoder_dir, **encoder_overrides)
        )

    @property
    def name(self) -> str:
        return str(self.index.encoder_config.get("kind", "sparse"))

    def encode(self, texts: Sequence[str]) -> SparseVectors:
        return self.encoder.encode_queries(list(texts))

    def search_vectors(self, queries: SparseVectors, k: int) -> list[list[Hit]]:
        ids, scores = self.index.search(queries, k)
        return [
            [
                Hit(self.index.doc_id(int(i)), float(s), int(i))
                for i, s in zip(r_ids, r_sc, strict=True)
                if i >= 0
            ]
            for r_ids, r_sc in zip(ids, scores, strict=True)
        ]

    def search_hits(self, texts: Sequence[str], k: int = 10) -> list[list[Hit]]:
        t0 = time.perf_counter()
        q = self.encode(texts)
        t1 = time.perf_counter()
        hits = self.search_vectors(q, k)
        self.last_timing = {"encode_s": t1 - t0, "search_s": time.perf_counter() - t1}
        return hits

    def search(self, texts: Sequence[str], k: int = 10) -> list[list[tuple[str, float]]]:
        """The eval runner's interface: (doc id, score) best first, per query."""
        return [[(h.id, h.score) for h in hits] for hits in self.search_hits(texts, k)]

    def explain(self, query: SparseVectors, internal_id: int) -> list[dict[str, Any]]:
        """Matched tokens with query and document weights, heaviest contribution first."""
        terms, qw = query.row(0)
        dw = self.index.term_weights(internal_id, terms)
        keep = dw > 0
        names = self.encoder.tokens(terms[keep])
        rows = [
            {
                "token": t,
                "query_weight": float(a),
                "doc_weight": float(b),
                "contribution": float(a * b),
            }
            for t, a, b in zip(names, qw[keep], dw[keep], strict=True)
        ]
        return sorted(rows, key=lambda r: -r["contribution"])
