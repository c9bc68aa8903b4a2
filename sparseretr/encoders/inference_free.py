"""Inference-free SPLADE: a model encodes documents; a query is its tokens weighted by IDF.

No network runs at query time, so query latency is a tokenizer call plus the index lookup.
A document may also carry a lexical prior (encoders/lexical.py: BM25's saturated term
frequency over the same word pieces) added to the model's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from sparseretr.encoders.base import SparseEncoder
from sparseretr.encoders.lexical import LexicalPrior, add
from sparseretr.encoders.splade import SpladeEncoder, folder_settings
from sparseretr.encoders.st_layout import static_query_weights
from sparseretr.idf import IDF_FILE, bm25_idf, document_frequencies, load_idf_json, save_idf_json
from sparseretr.index.vectors import SparseVectors
from sparseretr.models import DEFAULT_SPLADE, model_in_state


class InferenceFreeEncoder(SparseEncoder):
    kind = "inference-free"

    def __init__(
        self,
        model: str = DEFAULT_SPLADE,
        *,
        idf: np.ndarray | None = None,
        lexical: LexicalPrior | dict[str, Any] | None = None,
        **doc_opts: Any,
    ):
        """lexical: the document-side lexical prior (None: the model folder's
        sparseretr_config.json "lexical" entry if any, else none)."""
        self.doc_encoder = SpladeEncoder(model, **doc_opts)
        self.tokenizer = self.doc_encoder.tokenizer
        self.vocab_size = self.doc_encoder.vocab_size
        self.idf_source = "given" if idf is not None else None
        layout, root = self.doc_encoder.layout, self.doc_encoder.root
        if idf is None and (root / IDF_FILE).is_file():  # OpenSearch style, and our exports
            idf = self._read_idf(root / IDF_FILE)
            self.idf_source = "model"
        elif idf is None and layout is not None and layout.query_weights is not None:
            idf = static_query_weights(layout.query_weights, self.vocab_size)
            self.idf_source = "model"  # a sentence-transformers static query route
        self.idf = idf
        if lexical is None:
            lexical = folder_settings(root).get("lexical")
        self.lexical = (
            lexical if isinstance(lexical, LexicalPrior) or lexical is None
            else LexicalPrior.from_dict(lexical)
        )  # fmt: skip

    def _read_idf(self, path: Path) -> np.ndarray:
        return load_idf_json(path, self.tokenizer.get_vocab(), self.vocab_size)

    def fit(self, texts: Sequence[str]) -> None:
        """Corpus IDF over the tokenizer's vocabulary, used when the model ships no idf.json,
        and the lexical prior's average length when it has none yet."""
        need_avgdl = self.lexical is not None and self.lexical.avgdl is None
        if self.idf is not None and not need_avgdl:
            return
        tokens = self.doc_encoder.token_ids(texts, None, special=False)
        if need_avgdl:
            assert self.lexical is not None
            self.lexical.fit(tokens)
        if self.idf is not None:
            return
        df, n = document_frequencies(tokens, self.vocab_size)
        self.idf = bm25_idf(df, n)
        self.idf[self.tokenizer.all_special_ids] = 0.0
        self.idf_source = "corpus"

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> SparseVectors:
        learned = self.doc_encoder.encode_documents(
            texts, batch_size=batch_size, show_progress=show_progress
        )
        if self.lexical is None:
            return learned
        return add(learned, self.lexical_vectors(texts))

    def lexical_vectors(self, texts: Sequence[str]) -> SparseVectors:
        """The lexical prior of each document (whole text, word pieces, no special tokens)."""
        if self.lexical is None:
            raise RuntimeError("this encoder has no lexical prior")
        tokens = self.doc_encoder.token_ids(texts, None, special=False)
        return self.lexical.vectors(tokens, self.vocab_size)

    def encode_queries(self, texts: Sequence[str]) -> SparseVectors:
        if self.idf is None:
            raise RuntimeError("no IDF weights: the model has no idf.json; call fit(corpus) first")
        rows = []
        for ids in self.doc_encoder.token_ids(
            texts, self.doc_encoder.query_max_length, special=False
        ):
            uniq = np.unique(np.asarray(ids, dtype=np.int32))
            w = self.idf[uniq]
            rows.append((uniq[w > 0], w[w > 0]))
        return SparseVectors.from_rows(rows, self.vocab_size)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return self.doc_encoder.tokens(ids)

    def config(self) -> dict[str, Any]:
        return {
            **self.doc_encoder.config(),
            "kind": self.kind,
            "idf_source": self.idf_source,
            "lexical": None if self.lexical is None else self.lexical.to_dict(),
        }

    def save_state(self, folder: Path) -> None:
        self.doc_encoder.save_state(folder)
        if self.idf is not None:
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
            save_idf_json(Path(folder) / IDF_FILE, self.idf, vocab)

    @classmethod
    def from_config(
        cls, config: dict[str, Any], state_dir: Path | None = None, **overrides: Any
    ) -> Self:
        opts = {
            k: config[k]
            for k in ("max_length", "query_max_length", "top_k", "threshold")
            if k in config
        }
        opts["activation"] = config.get("activation", "log1p")  # older indexes: log1p only
        # An index records its prior (or its absence: an older index has none).
        opts["lexical"] = LexicalPrior.from_dict(config.get("lexical")) or {}
        enc = cls(model_in_state(config, state_dir), **opts, **overrides)
        if state_dir is not None and (Path(state_dir) / IDF_FILE).is_file():
            enc.idf = enc._read_idf(Path(state_dir) / IDF_FILE)
            enc.idf_source = config.get("idf_source", "index")
        return enc
