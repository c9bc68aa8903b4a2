"""Teacher ensemble and hard-negative mining, computed once and cached to one .npz file.

Heterogeneous teachers (dense all-MiniLM-L6-v2, BM25, SPLADE) score each training query's
candidates: its judged positives plus each miner's top-`depth` documents. Scores live on
incomparable scales, so each teacher's scores are min-max normalized per query over the
query's candidates, then averaged with configurable weights and scaled: that is the KL target.
Encoding the corpus is the expensive part (minutes on CPU for a dense teacher), so training
steps only read the cache, and the corpus encodings are cached beside it as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.errors import UserInputError
from sparseretr.training.config import TeacherConfig, TeacherMember
from sparseretr.training.data import TrainingData

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
QUERY_CHUNK = 256  # queries scored against the whole corpus at once (bounds memory)

Scorer = Callable[[Sequence[str]], np.ndarray]  # query texts -> [n, n_docs] scores


def _fingerprint(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def _bm25_scorer(
    data: TrainingData, member: TeacherMember, stem: Path, show_progress: bool
) -> Scorer:
    from sparseretr.encoders.bm25 import BM25Encoder

    enc = BM25Encoder()
    enc.fit(data.doc_texts)
    docs_t = enc.encode_documents(data.doc_texts).to_scipy().T.tocsr()
    return lambda texts: (
        enc.query_weights(enc.encode_queries(texts)).to_scipy() @ docs_t
    ).toarray()


def dense_corpus(
    data: TrainingData, member: TeacherMember, stem: Path, show_progress: bool = True
) -> tuple[Any, np.ndarray]:
    """The dense teacher's encoder and its corpus embeddings (row i = data.doc_ids[i]), cached
    beside the teacher cache: `sparseretr adapt --index` reuses them as the index's dense side."""
    from sparseretr.dense import DenseEncoder
    from sparseretr.models import DEFAULT_DENSE

    enc = DenseEncoder(member.model or DEFAULT_DENSE, max_length=member.max_length or 256)
    path = stem.with_name(
        f"{stem.name}.dense-{_fingerprint(data.doc_ids, data.doc_texts, enc.config())}.npy"
    )
    if path.is_file():
        emb = np.load(path)
    else:
        logger.info("dense teacher: encoding %d documents (cached to %s)", len(data.doc_ids), path)
        emb = enc.encode(data.doc_texts, show_progress=show_progress)
        _atomic_save(path, lambda f: np.save(f, emb))
    return enc, emb


def _dense_scorer(
    data: TrainingData, member: TeacherMember, stem: Path, show_progress: bool
) -> Scorer:
    enc, emb = dense_corpus(data, member, stem, show_progress)
    return lambda texts: enc.encode(texts) @ emb.T


def _splade_scorer(
    data: TrainingData, member: TeacherMember, stem: Path, show_progress: bool
) -> Scorer:
    import scipy.sparse as sp

    from sparseretr.encoders.splade import SpladeEncoder
    from sparseretr.models import DEFAULT_SPLADE

    enc = SpladeEncoder(member.model or DEFAULT_SPLADE, max_length=member.max_length or 256)
    path = stem.with_name(
        f"{stem.name}.splade-{_fingerprint(data.doc_ids, data.doc_texts, enc.config())}.npz"
    )
    if path.is_file():
        docs = sp.load_npz(path)
    else:
        logger.info("splade teacher: encoding %d documents (cached to %s)", len(data.doc_ids), path)
        docs = enc.encode_documents(data.doc_texts, show_progress=show_progress).to_scipy()
        _atomic_save(path, lambda f: sp.save_npz(f, docs))
    docs_t = docs.T.tocsr()
    return lambda texts: (enc.encode_queries(texts).to_scipy() @ docs_t).toarray()


# (data, member, cache stem, show a progress bar over the corpus pass) -> scorer
SCORERS: dict[str, Callable[[TrainingData, TeacherMember, Path, bool], Scorer]] = {
    "bm25": _bm25_scorer,
    "dense": _dense_scorer,
    "splade": _splade_scorer,
}


def _atomic_save(path: Path, write: Callable[[object], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant row becomes all zeros (no preference to distil)."""
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


@dataclass
class TeacherCache:
    """Per query (rows of TrainingData.query_ids): candidates, their miner ranks and scores."""

    cands: list[np.ndarray]  # doc rows, positives first
    ranks: list[np.ndarray]  # best rank over miners (0 = top); positives not mined: a large value
    is_pos: list[np.ndarray]
    scores: dict[str, list[np.ndarray]]  # teacher kind -> raw scores aligned with cands
    meta: dict

    # -- what the trainer reads ---------------------------------------------------------------
    def negatives(self, q: int, depth: int) -> np.ndarray:
        """Mined non-positive candidates within the top `depth` of some miner."""
        keep = (~self.is_pos[q]) & (self.ranks[q] < depth)
        return self.cands[q][keep]

    def pool(self, queries: Sequence[int], depth: int) -> np.ndarray:
        """Doc rows of the queries' positives and top-`depth` mined candidates (an eval pool)."""
        parts = [self.cands[q][self.is_pos[q] | (self.ranks[q] < depth)] for q in queries]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def ensemble(self, q: int, weights: dict[str, float], scale: float) -> np.ndarray:
        """Weighted mean of per-query min-max normalized teacher scores, times scale."""
        total = sum(weights.values())
        if total <= 0:
            raise UserInputError(f"teacher weights must sum to > 0, got {weights}")
        mix = sum(w * minmax(self.scores[k][q]) for k, w in weights.items())
        return (scale / total) * np.asarray(mix, dtype=np.float32)

    def target_fn(self, weights: dict[str, float], scale: float) -> Callable:
        """(q, doc rows) -> target logits; a document outside the candidates gets the minimum."""
        missing = sorted(set(weights) - set(self.scores))
        if missing:
            raise UserInputError(f"teacher cache has no scores for {missing}; rebuild it")
        tables: dict[int, dict[int, float]] = {}

        def lookup(q: int, docs: np.ndarray) -> np.ndarray:
            if q not in tables:
                tables[q] = dict(
                    zip(
                        self.cands[q].tolist(),
                        self.ensemble(q, weights, scale).tolist(),
                        strict=True,
                    )
                )
            table = tables[q]
            return np.array([table.get(int(d), 0.0) for d in docs], dtype=np.float32)

        return lookup

    # -- storage ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        ptr = np.cumsum([0] + [c.size for c in self.cands]).astype(np.int64)
        arrays = {
            "ptr": ptr,
            "cands": np.concatenate(self.cands).astype(np.int64),
            "ranks": np.concatenate(self.ranks).astype(np.int64),
            "is_pos": np.concatenate(self.is_pos),
            "meta": np.array(json.dumps(self.meta)),
        }
        for k, v in self.scores.items():
            arrays[f"score_{k}"] = np.concatenate(v).astype(np.float32)
        _atomic_save(Path(path), lambda f: np.savez_compressed(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> TeacherCache:
        with np.load(path) as z:
            ptr = z["ptr"]

            def split(a: np.ndarray) -> list[np.ndarray]:
                return [a[ptr[i] : ptr[i + 1]] for i in range(ptr.size - 1)]

            scores = {k[6:]: split(z[k]) for k in z.files if k.startswith("score_")}
            return cls(
                cands=split(z["cands"]),
                ranks=split(z["ranks"]),
                is_pos=split(z["is_pos"]),
                scores=scores,
                meta=json.loads(str(z["meta"])),
            )


def cache_meta(data: TrainingData, cfg: TeacherConfig) -> dict:
    """What the cache depends on: a cache whose meta differs is rebuilt, never reused."""
    return {
        "version": CACHE_VERSION,
        "corpus": _fingerprint(data.doc_ids, data.doc_texts),
        "queries": _fingerprint(
            data.query_ids, data.query_texts, [p.tolist() for p in data.positives]
        ),
        "members": sorted(
            [{"kind": m.kind, "model": m.model, "max_length": m.max_length} for m in cfg.members],
            key=lambda m: m["kind"],
        ),
        "miners": sorted(cfg.miners),
        "depth": cfg.depth,
    }


def build_teacher_cache(
    data: TrainingData, cfg: TeacherConfig, path: Path, show_progress: bool = True
) -> TeacherCache:
    """Mine candidates for every query of the split (train and held-out) and score them."""
    kinds = [m.kind for m in cfg.members]
    if len(set(kinds)) != len(kinds):
        raise UserInputError(f"one teacher member per kind, got {kinds}")
    unknown = sorted(set(cfg.miners) - set(SCORERS))
    if unknown:
        raise UserInputError(f"unknown miner(s) {unknown}; choose from {sorted(SCORERS)}")
    members = {m.kind: m for m in cfg.members}
    for kind in cfg.miners:
        members.setdefault(kind, TeacherMember(kind))
    scorers = {k: SCORERS[k](data, m, Path(path), show_progress) for k, m in members.items()}
    n_docs = len(data.doc_ids)
    depth = min(cfg.depth, n_docs)
    out = TeacherCache([], [], [], {k: [] for k in kinds}, cache_meta(data, cfg))
    for start in range(0, len(data.query_ids), QUERY_CHUNK):
        texts = data.query_texts[start : start + QUERY_CHUNK]
        full = {k: np.asarray(s(texts), dtype=np.float32) for k, s in scorers.items()}
        for i in range(len(texts)):
            q = start + i
            rank = np.full(n_docs, np.iinfo(np.int64).max // 2, dtype=np.int64)
            for kind in cfg.miners:
                top = np.argsort(-full[kind][i], kind="stable")[:depth]
                rank[top] = np.minimum(rank[top], np.arange(depth))
            pos = data.positives[q]
            mined = np.flatnonzero(rank < depth)
            mined = mined[~np.isin(mined, pos)]
            mined = mined[np.argsort(rank[mined], kind="stable")]
            cands = np.concatenate([pos, mined]).astype(np.int64)
            out.cands.append(cands)
            out.ranks.append(rank[cands])
            out.is_pos.append(np.arange(cands.size) < pos.size)
            for k in kinds:
                out.scores[k].append(full[k][i][cands])
    out.save(Path(path))
    return out


def load_or_build(
    data: TrainingData, cfg: TeacherConfig, path: str | Path, show_progress: bool = True
) -> TeacherCache:
    """The cache at `path` if it was built from the same data and teachers, else a fresh one."""
    path = Path(path)
    if path.is_file():
        try:
            cache = TeacherCache.load(path)
            if cache.meta == cache_meta(data, cfg):
                return cache
            logger.info("teacher cache %s is stale (data or teachers changed): rebuilding", path)
        except (OSError, ValueError, KeyError) as e:
            logger.warning("teacher cache %s unreadable (%s): rebuilding", path, e)
    return build_teacher_cache(data, cfg, path, show_progress)
