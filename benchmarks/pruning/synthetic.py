"""Seeded synthetic learned-sparse collection with topical structure, calibrated to splade-tiny.

Why synthetic: the pruning targets are set at 1M documents and SciFact has 5k; encoding 1M real
passages on 2 CPU cores would take days. What matters for dynamic pruning is reproduced:
a Zipfian background (SPLADE expands every document to frequent near-stopwords: SciFact's top
term is in 93% of documents), topics (each a Zipfian distribution over a few hundred WordPiece
ids) mixed per document, heavier weights on a document's topical terms, and queries drawn from
the same topics. Calibration targets (splade-tiny on SciFact, measured on the real index):
~285 non-zeros per document (p10 208, p90 365), weights log(1 + ReLU(x)) with median ~0.58,
p90 ~1.5, max ~2.7; siamese queries ~50 terms, inference-free queries ~20 terms weighted by
BM25 idf (what sparseretr's inference-free encoder does).

Generation is chunked (50k documents at a time) and every chunk has its own seed, so 1M
documents (285M postings) stream in ~2.3 GB of CSR without a large temporary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from sparseretr.index.vectors import SparseVectors

VOCAB = 30522
FIRST_TOKEN = 999  # [PAD], [unused*], [CLS], [SEP], [MASK] sit below; SPLADE never emits them
_CHUNK = 50_000


@dataclass(frozen=True)
class Params:
    """Shape of the collection; the defaults are the calibration to splade-tiny on SciFact."""

    docs_per_topic: int = 400
    topic_support: int = 600
    topic_zipf: float = 1.0
    bg_zipf: float = 1.05
    bg_offset: float = 20.0
    doc_len_median: float = 280.0
    doc_len_sigma: float = 0.2
    doc_bg_prob: float = 0.5
    max_doc_topics: int = 3
    w_mu: float = -0.55
    w_sigma: float = 1.25
    w_topic_bonus: float = 0.55
    w_count_gain: float = 0.6
    w_cap: float = 2.9
    siamese_len: float = 50.0
    siamese_bg_prob: float = 0.35
    if_len: float = 20.0
    if_bg_prob: float = 0.25


@dataclass
class Model:
    """The sampled vocabulary model: background and topic distributions (CDFs over term ids)."""

    bg_terms: np.ndarray
    bg_cdf: np.ndarray
    topic_ptr: np.ndarray
    topic_terms: np.ndarray
    topic_cdf: np.ndarray
    topic_pop_cdf: np.ndarray


def make_model(n_docs: int, params: Params, seed: int) -> Model:
    rng = np.random.default_rng([seed, 0])
    usable = np.arange(FIRST_TOKEN, VOCAB, dtype=np.int32)
    bg_terms = rng.permutation(usable)
    ranks = np.arange(bg_terms.size, dtype=np.float64)
    bg_p = 1.0 / (ranks + params.bg_offset) ** params.bg_zipf
    bg_p /= bg_p.sum()
    n_topics = max(8, n_docs // params.docs_per_topic)
    # Topics draw their words with a mild preference for common ones (p ** 0.3): mid-frequency
    # words are topical, the very top of the background is not.
    pick = bg_p**0.3
    pick /= pick.sum()
    s = params.topic_support
    topic_terms = np.empty(n_topics * s, dtype=np.int32)
    topic_cdf = np.empty(n_topics * s, dtype=np.float64)
    zipf = 1.0 / (np.arange(s) + 2.0) ** params.topic_zipf
    zipf_cdf = np.cumsum(zipf / zipf.sum())
    for t in range(n_topics):
        topic_terms[t * s : (t + 1) * s] = rng.choice(bg_terms, size=s, replace=False, p=pick)
        topic_cdf[t * s : (t + 1) * s] = zipf_cdf
    pop = 1.0 / (np.arange(n_topics) + 10.0) ** 0.5
    return Model(
        bg_terms=bg_terms,
        bg_cdf=np.cumsum(bg_p),
        topic_ptr=np.arange(n_topics + 1, dtype=np.int64) * s,
        topic_terms=topic_terms,
        topic_cdf=topic_cdf,
        topic_pop_cdf=np.cumsum(pop / pop.sum()),
    )


@njit(cache=True)
def _draw(cdf: np.ndarray, a: int, b: int) -> int:
    u = np.random.random() * cdf[b - 1]
    return a + min(np.searchsorted(cdf[a:b], u), b - a - 1)


@njit(cache=True)
def _sample_rows(
    seed: int,
    n: int,
    len_median: float,
    len_sigma: float,
    bg_prob: float,
    max_topics: int,
    bg_terms: np.ndarray,
    bg_cdf: np.ndarray,
    topic_ptr: np.ndarray,
    topic_terms: np.ndarray,
    topic_cdf: np.ndarray,
    topic_pop_cdf: np.ndarray,
    vocab: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of distinct term ids with (repeat count, drawn-from-topic flag) per term."""
    np.random.seed(seed)
    cap = int(len_median * np.exp(4 * len_sigma)) + 8
    indptr = np.zeros(n + 1, dtype=np.int64)
    terms = np.empty(n * cap, dtype=np.int32)
    counts = np.empty(n * cap, dtype=np.int32)
    topical = np.empty(n * cap, dtype=np.bool_)
    stamp = np.full(vocab, -1, dtype=np.int64)
    where = np.zeros(vocab, dtype=np.int64)
    n_top = topic_pop_cdf.shape[0]
    tops = np.empty(max_topics, dtype=np.int64)
    mix = np.empty(max_topics, dtype=np.float64)
    pos = 0
    for i in range(n):
        target = int(len_median * np.exp(len_sigma * np.random.standard_normal()))
        target = max(4, min(target, cap))
        nt = 1
        while nt < max_topics and np.random.random() < 0.45:
            nt += 1
        tot = 0.0
        for j in range(nt):
            tops[j] = _draw(topic_pop_cdf, 0, n_top)
            mix[j] = np.random.exponential(1.0)
            tot += mix[j]
        start = pos
        draws = 0
        while pos - start < target and draws < 8 * target:
            draws += 1
            if np.random.random() < bg_prob:
                t = bg_terms[_draw(bg_cdf, 0, bg_cdf.shape[0])]
                top = False
            else:
                u = np.random.random() * tot
                j = 0
                while j < nt - 1 and u > mix[j]:
                    u -= mix[j]
                    j += 1
                tp = tops[j]
                t = topic_terms[_draw(topic_cdf, topic_ptr[tp], topic_ptr[tp + 1])]
                top = True
            if stamp[t] != i:
                stamp[t] = i
                where[t] = pos
                terms[pos] = t
                counts[pos] = 1
                topical[pos] = top
                pos += 1
            else:
                counts[where[t]] += 1
                if top:
                    topical[where[t]] = True
        # sorted term ids within the row (CSR contract)
        order = np.argsort(terms[start:pos])
        terms[start:pos] = terms[start:pos][order]
        counts[start:pos] = counts[start:pos][order]
        topical[start:pos] = topical[start:pos][order]
        indptr[i + 1] = pos
    return indptr, terms[:pos].copy(), counts[:pos].copy(), topical[:pos].copy()


def _weights(
    rng: np.random.Generator, counts: np.ndarray, topical: np.ndarray, p: Params
) -> np.ndarray:
    """log(1 + ReLU(x)) with lognormal x: more for topical and repeated terms, softly capped."""
    z = rng.standard_normal(counts.size)
    x = np.exp(p.w_mu + p.w_sigma * z + p.w_topic_bonus * topical + p.w_count_gain * np.log(counts))
    w = np.log1p(x)
    w = p.w_cap * np.tanh(w / p.w_cap)
    return np.maximum(w, 1e-3).astype(np.float32)


def documents(n_docs: int, *, seed: int = 0, params: Params | None = None) -> SparseVectors:
    """n_docs documents, generated chunk by chunk (deterministic for a given seed)."""
    p = params or Params()
    m = make_model(n_docs, p, seed)
    ptrs, inds, vals = [np.zeros(1, dtype=np.int64)], [], []
    offset = 0
    for c, a in enumerate(range(0, n_docs, _CHUNK)):
        n = min(_CHUNK, n_docs - a)
        indptr, terms, counts, topical = _sample_rows(
            seed * 1_000_003 + c + 1, n, p.doc_len_median, p.doc_len_sigma, p.doc_bg_prob,
            p.max_doc_topics, m.bg_terms, m.bg_cdf, m.topic_ptr, m.topic_terms, m.topic_cdf,
            m.topic_pop_cdf, VOCAB,
        )  # fmt: skip
        vals.append(_weights(np.random.default_rng([seed, 1, c]), counts, topical, p))
        inds.append(terms)
        ptrs.append(indptr[1:] + offset)
        offset += int(indptr[-1])
    return SparseVectors(
        indptr=np.concatenate(ptrs),
        indices=np.concatenate(inds) if inds else np.zeros(0, np.int32),
        data=np.concatenate(vals) if vals else np.zeros(0, np.float32),
        vocab_size=VOCAB,
    )


def queries(
    n_docs: int,
    n_queries: int,
    kind: str,
    *,
    doc_df: np.ndarray | None = None,
    seed: int = 0,
    params: Params | None = None,
) -> SparseVectors:
    """Queries over the same topics as documents(n_docs, seed=seed).

    kind="siamese": ~50 expanded terms with SPLADE-like weights; kind="inference-free": ~20
    terms weighted by BM25 idf over the collection (doc_df: document frequency per term).
    """
    p = params or Params()
    m = make_model(n_docs, p, seed)
    if kind == "siamese":
        length, bg, salt = p.siamese_len, p.siamese_bg_prob, 7
    elif kind == "inference-free":
        length, bg, salt = p.if_len, p.if_bg_prob, 11
        if doc_df is None:
            raise ValueError("inference-free queries need doc_df for their idf weights")
    else:
        raise ValueError(f"unknown query kind {kind!r}")
    indptr, terms, counts, topical = _sample_rows(
        seed * 1_000_003 + salt * 100_000 + 17, n_queries, length, 0.3, bg, 2, m.bg_terms,
        m.bg_cdf, m.topic_ptr, m.topic_terms, m.topic_cdf, m.topic_pop_cdf, VOCAB,
    )  # fmt: skip
    if kind == "siamese":
        w = _weights(np.random.default_rng([seed, 2, salt]), counts, topical, p)
    else:
        df = np.asarray(doc_df, dtype=np.float64)[terms]
        w = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    return SparseVectors(indptr=indptr, indices=terms, data=w, vocab_size=VOCAB)


def describe(docs: SparseVectors, qsets: dict[str, SparseVectors]) -> dict:
    """The calibration figures, to put next to splade-tiny on SciFact in the report."""
    nnz = docs.nnz_per_row()
    df = np.bincount(docs.indices, minlength=docs.vocab_size)
    top = np.sort(df)[::-1]
    out = {
        "n_docs": len(docs),
        "n_postings": docs.nnz,
        "doc_nnz_mean": float(nnz.mean()),
        "doc_nnz_p10_p50_p90": np.percentile(nnz, [10, 50, 90]).round(1).tolist(),
        "doc_weight_p10_p50_p90_max": np.percentile(docs.data, [10, 50, 90, 100]).round(3).tolist(),
        "terms_used": int((df > 0).sum()),
        "top_df_fraction": (top[:5] / max(len(docs), 1)).round(3).tolist(),
        "postings_share_top1000_terms": float(top[:1000].sum() / max(top.sum(), 1)),
    }
    for name, q in qsets.items():
        out[f"{name}_nnz_mean"] = float(q.nnz_per_row().mean()) if len(q) else 0.0
        out[f"{name}_weight_p50_max"] = (
            np.percentile(q.data, [50, 100]).round(3).tolist() if q.nnz else []
        )
    return out
