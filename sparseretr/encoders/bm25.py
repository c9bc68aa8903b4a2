"""BM25 as sparse vectors: documents carry BM25 impacts, queries carry term counts.

Lexical search then runs in the same index and kernels as learned sparse search, and serves as
the baseline that needs no Java. The analyzer follows Lucene's English one (as pyserini uses):
lower case, possessive strip, Lucene's 33 stop words, Porter stemming.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import Stemmer

from sparseretr.encoders.base import SparseEncoder
from sparseretr.idf import bm25_idf
from sparseretr.index.vectors import SparseVectors

VOCAB_FILE = "bm25_vocab.json"
LUCENE_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)
_TOKEN = re.compile(r"\w+", re.UNICODE)


class Analyzer:
    def __init__(self) -> None:
        self._stem = Stemmer.Stemmer("porter").stemWord

    def __call__(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower().replace("'s ", " "))
        return [self._stem(w) for w in words if w not in LUCENE_STOPWORDS]


class BM25Encoder(SparseEncoder):
    kind = "bm25"

    def __init__(self, *, k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.analyzer = Analyzer()
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)
        self.avgdl = 0.0
        self.n_docs = 0

    @property
    def vocab_size(self) -> int:  # type: ignore[override]
        return len(self.vocab)

    def fit(self, texts: Sequence[str]) -> None:
        df: Counter[str] = Counter()
        total = 0
        for text in texts:
            terms = self.analyzer(text)
            total += len(terms)
            df.update(set(terms))
        self.vocab = {t: i for i, t in enumerate(sorted(df))}
        self.n_docs = len(texts)
        self.avgdl = total / max(1, self.n_docs)
        self.idf = bm25_idf(np.array([df[t] for t in sorted(df)], dtype=np.int64), self.n_docs)

    def _rows(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        if not self.vocab:
            raise RuntimeError("BM25Encoder has no vocabulary: call fit(corpus) first")
        rows = []
        for text in texts:
            terms = self.analyzer(text)
            counts = Counter(t for t in terms if t in self.vocab)
            ids = np.fromiter((self.vocab[t] for t in counts), dtype=np.int32, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            rows.append((ids, tf, len(terms)))
        return rows

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> SparseVectors:
        out = []
        for ids, tf, dl in self._rows(texts):
            norm = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl)
            out.append((ids, self.idf[ids] * tf * (self.k1 + 1.0) / (tf + norm)))
        return SparseVectors.from_rows(out, self.vocab_size)

    def encode_queries(self, texts: Sequence[str]) -> SparseVectors:
        return SparseVectors.from_rows(
            [(ids, tf) for ids, tf, _ in self._rows(texts)], self.vocab_size
        )

    def tokens(self, ids: Sequence[int]) -> list[str]:
        inv = getattr(self, "_inv", None)
        if inv is None or len(inv) != len(self.vocab):
            inv = self._inv = sorted(self.vocab, key=self.vocab.__getitem__)
        return [inv[int(i)] for i in ids]

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "k1": self.k1, "b": self.b, "analyzer": "lucene-english-porter"}

    def save_state(self, folder: Path) -> None:
        state = {
            "vocab": self.tokens(range(self.vocab_size)),
            "idf": self.idf.tolist(),
            "avgdl": self.avgdl,
            "n_docs": self.n_docs,
        }
        (Path(folder) / VOCAB_FILE).write_text(json.dumps(state))

    @classmethod
    def from_config(cls, config: dict[str, Any], state_dir: Path | None = None, **_: Any) -> Self:
        enc = cls(k1=config.get("k1", 0.9), b=config.get("b", 0.4))
        path = Path(state_dir or ".") / VOCAB_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read BM25 vocabulary {path}: {e}") from e
        enc.vocab = {t: i for i, t in enumerate(state["vocab"])}
        enc.idf = np.asarray(state["idf"], dtype=np.float32)
        enc.avgdl, enc.n_docs = float(state["avgdl"]), int(state["n_docs"])
        return enc
