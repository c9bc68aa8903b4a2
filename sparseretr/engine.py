"""Engine: everything a query needs, loaded once, shared by the HTTP service and `eval`.

One code path from query text to fused hits means the numbers `sparseretr eval beir --mode
hybrid` reports are the numbers the service serves.

Index layout it reads:
    <index>/            sparse index (learned sparse or BM25): always
    <index>/dense/      DenseIndex + its encoder config (optional; enables dense, hybrid)
    <index>/bm25/       a BM25 sparse index over the same docs (optional; enables bm25)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from index import DocStore
from index.dense import DENSE_DIR, DenseIndex, Kind
from sparseretr.dense import DenseEncoder
from sparseretr.fusion import DEFAULTS, FusedHit, Normalization, convex, rrf, single
from sparseretr.models import DEFAULT_DENSE
from sparseretr.search import Hit, SparseSearcher
from sparseretr.sparse import SparseVectors

BM25_DIR = "bm25"
MODES: tuple[str, ...] = ("sparse", "dense", "hybrid", "bm25")
FUSIONS: tuple[str, ...] = ("rrf", "convex")


@dataclass
class SearchResult:
    """Top-k fused hits of one query.

    timing: milliseconds; encode_ms and search_ms are the batch's cost divided by its size
    (encoding and search run once per batch), fuse_ms is this query's own.
    explain: hit id -> its matched tokens (SparseSearcher.explain, heaviest first); None when
    not asked, or for dense mode, which has no tokens to show.
    """

    hits: list[FusedHit]
    timing: dict[str, float] = field(default_factory=dict)
    explain: dict[str, list[dict[str, Any]]] | None = None


class Engine:
    """A sparse searcher plus optional dense and BM25 sides over the same documents."""

    def __init__(
        self,
        sparse: SparseSearcher,
        *,
        dense_index: DenseIndex | None = None,
        dense_encoder: DenseEncoder | None = None,
        bm25: SparseSearcher | None = None,
    ) -> None:
        if (dense_index is None) != (dense_encoder is None):
            raise ValueError("pass both dense_index and dense_encoder, or neither")
        if dense_index is not None and dense_encoder is not None:
            if dense_index.n != sparse.index.n_docs:
                raise ValueError(
                    f"dense index has {dense_index.n} rows, sparse index "
                    f"{sparse.index.n_docs} docs: they come from different builds"
                )
            if dense_encoder.dim != dense_index.dim:
                raise ValueError(
                    f"dense encoder dim {dense_encoder.dim} != dense index dim {dense_index.dim}"
                )
        self.sparse = sparse
        self.dense_index = dense_index
        self.dense_encoder = dense_encoder
        self.bm25 = bm25

    @classmethod
    def open(
        cls,
        index_path: str | Path,
        *,
        dense: bool = True,
        bm25: bool = True,
        device: str | None = None,
        torch_threads: int | None = 1,
    ) -> Engine:
        """Open the sparse index and whichever optional sides exist (dense=False skips loading
        the dense model, e.g. for a sparse-only service).

        torch_threads: intra-op threads for query encoding (process-wide). One by default:
        a query is a few dozen tokens, so OpenMP fan-out costs more than it saves, and under
        load its spinning threads made a query ~40x slower here; concurrency comes from
        serving several queries at once instead. None leaves torch's setting alone.
        """
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        root = Path(index_path)
        sparse = SparseSearcher.open(root)
        dense_index = encoder = bm25_side = None
        try:
            if dense and (root / DENSE_DIR).is_dir():
                dense_index = DenseIndex.open(root / DENSE_DIR, n_docs=sparse.index.n_docs)
                encoder = DenseEncoder.from_config(dense_index.encoder_config, device=device)
            if bm25 and (root / BM25_DIR).is_dir():
                bm25_side = SparseSearcher.open(root / BM25_DIR)
            return cls(sparse, dense_index=dense_index, dense_encoder=encoder, bm25=bm25_side)
        except BaseException:
            sparse.index.close()  # a broken optional side must not leak the doc store handle
            raise

    # ------------------------------------------------------------ properties
    @property
    def modes(self) -> list[str]:
        dense = self.dense_index is not None
        have = {"sparse": True, "dense": dense, "hybrid": dense, "bm25": self.bm25 is not None}
        return [m for m in MODES if have[m]]

    @property
    def default_mode(self) -> str:
        """hybrid where the index has a dense side, else sparse."""
        return "hybrid" if self.dense_index is not None else "sparse"

    @property
    def docstore(self) -> DocStore | None:
        return self.sparse.index.docstore

    def stats(self) -> dict[str, Any]:
        """What /stats and the metrics report: sizes, encoders and the available modes."""
        index = self.sparse.index
        dense = None
        if self.dense_index is not None:
            d = self.dense_index
            dense = {"kind": d.kind, "n": d.n, "dim": d.dim, "model": d.encoder_config.get("model")}
        return {
            "index_path": str(index.path),
            "n_docs": index.n_docs,
            "n_postings": index.n_postings,
            "vocab": index.vocab_size,
            "encoder": self.sparse.name,
            "modes": self.modes,
            "dense": dense,
            "bm25_docs": self.bm25.index.n_docs if self.bm25 is not None else None,
        }

    def check_mode(self, mode: str | None) -> str:
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; available modes: {self.modes}")
        if mode not in self.modes:
            side = BM25_DIR if mode == "bm25" else DENSE_DIR
            raise ValueError(
                f"mode {mode!r} is not available for the index at {self.sparse.index.path} "
                f"(no {side}/ folder, or opened with {side}=False); available modes: {self.modes}"
            )
        return mode

    # ---------------------------------------------------------------- search
    def search(
        self,
        queries: Sequence[str],
        *,
        k: int = 10,
        mode: str | None = None,
        fusion: str = DEFAULTS["fusion"],
        alpha: float = DEFAULTS["alpha"],
        rrf_k: int = DEFAULTS["rrf_k"],
        normalization: Normalization = DEFAULTS["normalization"],
        candidates: int = DEFAULTS["candidates"],
        explain: bool = False,
    ) -> list[SearchResult]:
        """Search a batch: each side encodes all queries in one call, then searches in one call.

        Hybrid takes max(candidates, k) from each side and fuses their union. mode=None picks
        default_mode.
        """
        mode = self.check_mode(mode)
        if isinstance(queries, str):
            raise TypeError("pass a list of query strings, not a single string")
        for name, v in (("k", k), ("candidates", candidates)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        fuse = _fuser(fusion, rrf_k, alpha, normalization) if mode == "hybrid" else None
        texts = list(queries)
        if not texts:
            return []
        depth = max(candidates, k) if mode == "hybrid" else k
        sides = {
            "sparse": ("sparse",),
            "bm25": ("bm25",),
            "dense": ("dense",),
            "hybrid": ("sparse", "dense"),
        }[mode]

        t0 = time.perf_counter()
        encoded = {side: self._encode(side, texts) for side in sides}
        t1 = time.perf_counter()
        hits = {side: self._search(side, encoded[side], depth) for side in sides}
        t2 = time.perf_counter()
        n = len(texts)
        per_q = {"encode_ms": (t1 - t0) * 1e3 / n, "search_ms": (t2 - t1) * 1e3 / n}

        results = []
        for qi in range(len(texts)):
            t3 = time.perf_counter()
            runs = {side: [(h.id, h.score) for h in hits[side][qi]] for side in sides}
            fused = (fuse(runs) if fuse else single(sides[0], runs[sides[0]]))[:k]
            timing = {**per_q, "fuse_ms": (time.perf_counter() - t3) * 1e3}
            result = SearchResult(fused, timing)
            if explain and mode != "dense":
                t4 = time.perf_counter()
                side = "bm25" if mode == "bm25" else "sparse"
                result.explain = self._explain(side, encoded[side], qi, fused, hits)
                timing["explain_ms"] = (time.perf_counter() - t4) * 1e3
            results.append(result)
        return results

    def searcher(self, mode: str | None = None, **options: Any) -> ModeSearcher:
        """The eval runner's interface over this engine: search(texts, k) -> [(id, score)]."""
        return ModeSearcher(self, self.check_mode(mode), options)

    def close(self) -> None:
        for s in (self.sparse, self.bm25):
            if s is not None:
                s.index.close()

    # ------------------------------------------------------------- internals
    def _sparse_side(self, side: str) -> SparseSearcher:
        searcher = self.bm25 if side == "bm25" else self.sparse
        assert searcher is not None  # check_mode ran first
        return searcher

    def _encode(self, side: str, texts: list[str]) -> Any:
        if side == "dense":
            assert self.dense_encoder is not None
            return self.dense_encoder.encode(texts)
        return self._sparse_side(side).encode(texts)

    def _search(self, side: str, encoded: Any, depth: int) -> list[list[Hit]]:
        if side != "dense":
            return self._sparse_side(side).search_vectors(encoded, depth)
        assert self.dense_index is not None
        ids, scores = self.dense_index.search(encoded, depth)
        doc_id = self.sparse.index.doc_id  # dense row i is sparse internal id i
        return [
            [Hit(doc_id(int(i)), float(s), int(i)) for i, s in zip(row, sc, strict=True) if i >= 0]
            for row, sc in zip(ids, scores, strict=True)
        ]

    def _explain(
        self,
        side: str,
        qvecs: SparseVectors,
        qi: int,
        fused: list[FusedHit],
        hits: dict[str, list[list[Hit]]],
    ) -> dict[str, list[dict[str, Any]]]:
        searcher = self._sparse_side(side)
        # Internal ids from this query's hits; dense rows share the sparse numbering, so a
        # dense-only hit in hybrid still shows which of its tokens (if any) matched.
        internal = {h.id: h.internal for run in hits.values() for h in run[qi]}
        q = qvecs.slice([qi])
        return {h.id: searcher.explain(q, internal[h.id]) for h in fused}


def _fuser(
    fusion: str, rrf_k: int, alpha: float, normalization: Normalization
) -> Callable[[dict[str, list[tuple[str, float]]]], list[FusedHit]]:
    """The hybrid fusion as a function of the runs, tried once on empty runs so that bad
    parameters fail before any encoding, with fusion's own messages."""
    if fusion == "rrf":
        fn = partial(rrf, k=rrf_k)
    elif fusion == "convex":
        fn = partial(convex, alpha=alpha, normalization=normalization)
    else:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    fn({"sparse": [], "dense": []})
    return fn


class ModeSearcher:
    """One engine mode with fixed options, shaped like SparseSearcher for eval.runner."""

    def __init__(self, engine: Engine, mode: str, options: dict[str, Any]) -> None:
        self.engine = engine
        self.mode = mode
        self.options = options
        self.name = mode
        self.last_timing: dict[str, float] = {}

    def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        results = self.engine.search(texts, k=k, mode=self.mode, **self.options)
        # Seconds, summed over the batch, like SparseSearcher.last_timing (the runner adds them).
        self.last_timing = {
            key.replace("_ms", "_s"): sum(r.timing[key] for r in results) / 1e3
            for key in ("encode_ms", "search_ms", "fuse_ms")
        }
        return [[(h.id, h.score) for h in r.hits] for r in results]


def build_dense_extra(
    texts: Sequence[str],
    model: str = DEFAULT_DENSE,
    kind: Kind = "flat",
    *,
    batch_size: int = 64,
    device: str | None = None,
    show_progress: bool = False,
    **index_options: Any,
) -> Callable[[Path], None]:
    """Encode the documents now, return the writer for build_index(extras={"dense": ...}).

    texts[i] must be the text of the doc at position i of build_index's doc_ids (use
    sparseretr.corpus.doc_text), because dense rows are addressed by sparse internal id.
    """
    encoder = DenseEncoder(model, batch_size=batch_size, device=device)
    empty = np.zeros((0, encoder.dim), np.float32)
    DenseIndex.writer(empty, encoder.config(), kind=kind, **index_options)  # bad options: fail now
    embeddings = encoder.encode(texts, show_progress=show_progress)
    return DenseIndex.writer(embeddings, encoder.config(), kind=kind, **index_options)
