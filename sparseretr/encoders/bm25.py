"""BM25 as sparse vectors: documents carry BM25's term-frequency part, queries count x IDF.

Lexical search then runs in the same index and kernels as learned sparse search, and serves as
the baseline that needs no Java. The analyzer follows Lucene's English one (as pyserini uses):
lower case, possessive strip, Lucene's 33 stop words, Porter stemming.

Why the IDF sits on the query side: a live index keeps taking documents, so document
frequencies change and new words appear. As in Lucene, the IDF comes from the collection's
statistics when the query runs (`query_weights`, fed the index's document frequencies), and a
word first seen in an upsert gets the next term id (`encode_documents(grow=True)`), so the
stored impacts never go stale. Only avgdl stays as fitted (the length norm is in the impacts).
Indexes built before this held idf x tf in the documents (config without "idf": "query");
they keep that scoring and a fixed vocabulary.
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

    def __init__(self, *, k1: float = 0.9, b: float = 0.4, idf_at_query: bool = True) -> None:
        self.k1, self.b = k1, b
        self.idf_at_query = idf_at_query
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

    def _rows(
        self, texts: Sequence[str], grow: bool = False
    ) -> list[tuple[np.ndarray, np.ndarray, int]]:
        if not self.vocab:
            raise RuntimeError("BM25Encoder has no vocabulary: call fit(corpus) first")
        rows = []
        for text in texts:
            terms = self.analyzer(text)
            if grow:
                for t in terms:
                    self.vocab.setdefault(t, len(self.vocab))
            counts = Counter(t for t in terms if t in self.vocab)
            ids = np.fromiter((self.vocab[t] for t in counts), dtype=np.int32, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            rows.append((ids, tf, len(terms)))
        return rows

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
        grow: bool = False,
    ) -> SparseVectors:
        """BM25's saturated term frequency per word (times the fitted IDF on old indexes).
        grow=True gives words not yet in the vocabulary the next ids (live indexes only:
        the writer must record them, see `added_terms`)."""
        if grow and not self.idf_at_query:
            grow = False  # a fixed-IDF vocabulary has no weight for a new word
        out = []
        for ids, tf, dl in self._rows(texts, grow):
            norm = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl)
            sat = tf * (self.k1 + 1.0) / (tf + norm)
            out.append((ids, sat if self.idf_at_query else self.idf[ids] * sat))
        return SparseVectors.from_rows(out, self.vocab_size)

    def encode_queries(self, texts: Sequence[str]) -> SparseVectors:
        """Term counts; `query_weights` turns them into BM25 weights with live statistics."""
        return SparseVectors.from_rows(
            [(ids, tf) for ids, tf, _ in self._rows(texts)], self.vocab_size
        )

    def query_weights(
        self, queries: SparseVectors, df: np.ndarray | None = None, n_docs: int = 0
    ) -> SparseVectors:
        """Multiply term counts by Lucene's IDF: from a collection's current document
        frequencies (df over term ids, n_docs documents; a live index passes its own), or the
        fitted corpus's when df is None. Old indexes' queries pass through (IDF in the docs)."""
        if not self.idf_at_query:
            return queries
        idf = np.zeros(queries.vocab_size, dtype=np.float32)
        if df is None:
            m = min(idf.size, self.idf.size)
            idf[:m] = self.idf[:m]  # words grown after the fit: no fitted weight
        else:
            d = np.zeros(queries.vocab_size, dtype=np.int64)
            m = min(d.size, df.size)
            d[:m] = df[:m]
            idf = np.where(d > 0, bm25_idf(d, n_docs), 0).astype(np.float32)
        w = (queries.data * idf[queries.indices]).astype(np.float32)
        keep = w > 0  # a word no document holds scores nothing
        indptr = np.concatenate([[0], np.cumsum(keep)])[queries.indptr].astype(np.int64)
        return SparseVectors(indptr, queries.indices[keep], w[keep], queries.vocab_size)

    def extend(self, words: Sequence[str]) -> None:
        """Append words a live index added after the fit (ids continue the vocabulary)."""
        for w in words:
            if w in self.vocab:
                raise ValueError(f"BM25 vocabulary already holds {w!r}: added terms out of order")
            self.vocab[w] = len(self.vocab)

    def truncate(self, size: int) -> None:
        """Forget words with ids >= size (undo a grow whose write failed)."""
        if size < len(self.vocab):
            self.vocab = {t: i for t, i in self.vocab.items() if i < size}

    def tokens(self, ids: Sequence[int]) -> list[str]:
        inv = getattr(self, "_inv", None)
        if inv is None or len(inv) != len(self.vocab):
            inv = self._inv = sorted(self.vocab, key=self.vocab.__getitem__)
        return [inv[int(i)] for i in ids]

    def config(self) -> dict[str, Any]:
        config = {"kind": self.kind, "k1": self.k1, "b": self.b}
        config["analyzer"] = "lucene-english-porter"
        return {**config, "idf": "query"} if self.idf_at_query else config

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
        enc = cls(
            k1=config.get("k1", 0.9), b=config.get("b", 0.4),
            idf_at_query=config.get("idf") == "query",
        )  # fmt: skip
        path = Path(state_dir or ".") / VOCAB_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read BM25 vocabulary {path}: {e}") from e
        enc.vocab = {t: i for i, t in enumerate(state["vocab"])}
        enc.idf = np.asarray(state["idf"], dtype=np.float32)
        enc.avgdl, enc.n_docs = float(state["avgdl"]), int(state["n_docs"])
        return enc
