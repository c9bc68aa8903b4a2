"""SparseIndex: open a built index (mmap by default) and search it with the Numba kernels.

Opening checks the files (format.check_files) and arrays (validate.py); searching borrows the
thread's scratch (workspace.py); brute_force is the reference (oracle.py).

Why search defaults to the pruned kernel: on clustered blocks it is exact and several times
faster; method="exhaustive" stays available, and brute_force (scipy) stays the reference.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from sparseretr.index.docstore import DocStore
from sparseretr.index.errors import REBUILD_HINT, CorruptIndexError
from sparseretr.index.format import (
    ARRAY_FILES,
    BLOCK_PTR,
    BLOCK_ROWS,
    DOC_IDS,
    DOC_IDS_ORDER,
    DOC_ORDER,
    DOC_SLOT,
    ENCODER_DIR,
    POST_DOCS,
    POST_IMPACTS,
    TERM_KTH,
    TERM_PTR,
    check_files,
    load_array,
    read_manifest,
)
from sparseretr.index.oracle import brute_force
from sparseretr.index.postings import (
    check_block_size,
    decode_slots,
    lookup_impacts,
)
from sparseretr.index.validate import check_arrays
from sparseretr.index.vectors import SparseVectors
from sparseretr.index.workspace import ThreadWorkspaces
from sparseretr.kernels import (
    Postings,
    Queries,
    dense_terms,
    narrow_slots,
    search_exhaustive,
    search_exhaustive_parallel,
    search_pruned,
    search_pruned_parallel,
)

# One parallel batch at a time per process: each batch already uses every Numba thread, and the
# workqueue threading layer (the fallback when neither TBB nor OpenMP is present) aborts on
# concurrent parallel launches. Single queries run nogil on per-thread workspaces, unlocked.
_BATCH_LOCK = threading.Lock()
# "Nothing deleted" for the kernels. Masks are passed read-only, like the mapped postings, so
# Numba compiles one specialization per kernel, not one per writability.
_NO_DEAD = np.zeros(0, dtype=np.uint8)
_NO_DEAD.setflags(write=False)

METHODS = ("pruned", "exhaustive")
# Below this many documents an exact "pruned" search runs the exhaustive kernel: setting up
# block-max pruning (bounds, candidate buckets, tables) costs more than walking every posting
# of a collection this small (benchmarks/README.md, "Measurements behind code choices").
PRUNE_MIN_DOCS = 16_384
# A term whose block rows take at least this many bytes per block of the index is decoded
# ahead (kernels.dense_terms), at 2.5 bytes per block plus 1 per posting in RAM (2 above
# 16 docs per block): bounds of one vectorized pass, postings added one flat loop per
# chunk. The terms found in a quarter of the blocks hold most of a long query's postings
# (benchmarks/README.md, "Measurements behind code choices").
DENSE_ROW_BYTES_PER_BLOCK = 0.25


class SparseIndex:
    """Read-only impact index: block postings + external ids + optional doc store."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        arrays: dict[str, np.ndarray],
        docstore: DocStore | None,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._term_ptr = arrays[TERM_PTR]
        self._post_docs = arrays[POST_DOCS]
        self._post_impacts = arrays[POST_IMPACTS]
        self._block_ptr = arrays[BLOCK_PTR]
        self._block_rows = arrays[BLOCK_ROWS]
        self._term_kth = arrays[TERM_KTH]
        self._doc_order = arrays[DOC_ORDER]
        self._doc_slot = arrays[DOC_SLOT]
        self._doc_ids = arrays[DOC_IDS]
        self._doc_ids_order = arrays[DOC_IDS_ORDER]
        self._docstore = docstore
        self._scale = float(manifest["quantization"]["scale"])
        self._block_size = int(manifest["layout"]["block_size"])
        self._n_blocks = -(-self.n_docs // self._block_size)
        self._ws = ThreadWorkspaces(self._n_blocks, self.n_docs)
        self._decoded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._decode_lock = threading.Lock()
        self._dense: tuple[np.ndarray, ...] | None = None
        self._kernel_postings: Postings | None = None

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, path: str | Path, *, mmap: bool = True, verify: bool = False) -> SparseIndex:
        """Open an index folder; verify=True also checks every file's sha256 and the postings."""
        root = Path(path)
        manifest = read_manifest(root)
        check_files(root, manifest, verify=verify)
        files = manifest["files"]
        arrays = {name: load_array(root, name, files[name], mmap=mmap) for name in ARRAY_FILES}
        try:
            bsize = check_block_size(manifest["layout"]["block_size"])
        except ValueError as e:
            raise CorruptIndexError(f"{root}: {e}; {REBUILD_HINT}") from e
        check_arrays(root, arrays, manifest, bsize, verify=verify)
        store = None
        if manifest.get("docstore"):
            store = DocStore(root / manifest["docstore"], readonly=True)
        return cls(root, manifest, arrays, store)

    # ------------------------------------------------------------ properties
    @property
    def n_docs(self) -> int:
        return int(self._manifest["n_docs"])

    @property
    def vocab_size(self) -> int:
        return int(self._manifest["vocab_size"])

    @property
    def n_postings(self) -> int:
        return int(self._manifest["n_postings"])

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    def doc_freqs(self) -> np.ndarray:
        """Documents holding each term id (its posting count), int64[vocab_size]."""
        return np.diff(np.asarray(self._term_ptr, dtype=np.int64))

    @property
    def encoder_config(self) -> dict:
        return self._manifest["encoder_config"]

    @property
    def encoder_dir(self) -> Path:
        return self.path / ENCODER_DIR

    @property
    def scale(self) -> float:
        """Dequantization factor: weight = impact * scale."""
        return self._scale

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def docstore(self) -> DocStore | None:
        return self._docstore

    @property
    def kernel_postings(self) -> Postings:
        """This index as the kernels take it (read-only arrays; the terms decoded ahead are
        built on first use); for the search path, benchmarks and tests alike."""
        if self._kernel_postings is None:
            self._kernel_postings = Postings(
                self._term_ptr, self._block_ptr, self._block_rows, self._post_docs,
                self._post_impacts, self._doc_order, self._term_kth, *self._dense_terms(),
                self._block_size,
            )  # fmt: skip
        return self._kernel_postings

    @property
    def postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term_ptr, doc ids int32, impacts uint8) by term, internal ids ascending: the plain
        CSC view of version 1. Decoded on first use and kept (5 bytes per posting in RAM), so
        it is for references and tools (brute_force, benchmarks), never the search path."""
        with self._decode_lock:
            if self._decoded is None:
                slots = decode_slots(
                    self._term_ptr, self._block_ptr, self._block_rows, self._post_docs,
                    self._post_impacts, self._block_size,
                )  # fmt: skip
                docs = np.asarray(self._doc_order)[slots]
                del slots
                m = sp.csc_matrix(
                    (np.array(self._post_impacts), docs, np.array(self._term_ptr)),
                    shape=(self.n_docs, self.vocab_size),
                )
                m.sort_indices()
                out = (
                    np.asarray(self._term_ptr),
                    m.indices.astype(np.int32, copy=False),
                    m.data.astype(np.uint8, copy=False),
                )
                for a in out:
                    a.setflags(write=False)
                self._decoded = out
            return self._decoded

    def doc_vectors(self, rows: np.ndarray) -> SparseVectors:
        """Dequantized vectors of the given internal ids, in that order, terms ascending.

        What a merge or an upgrade re-indexes from: with the same scale they quantize back to
        the same impacts. Decodes the postings afresh (never cached: merges are rare).
        """
        rows = np.asarray(rows, dtype=np.int64)
        slots = decode_slots(
            self._term_ptr, self._block_ptr, self._block_rows, self._post_docs,
            self._post_impacts, self._block_size,
        )  # fmt: skip
        m = sp.csc_matrix(
            (np.array(self._post_impacts), np.asarray(self._doc_order)[slots],
             np.array(self._term_ptr)),
            shape=(self.n_docs, self.vocab_size),
        ).tocsr()[rows]  # fmt: skip
        m.sort_indices()
        return SparseVectors(
            m.indptr.astype(np.int64), m.indices.astype(np.int32),
            m.data.astype(np.float32) * np.float32(self._scale), self.vocab_size,
        )  # fmt: skip

    # ------------------------------------------------------------------- ids
    def doc_id(self, i: int) -> str:
        """External id of internal doc i."""
        if not 0 <= i < self.n_docs:
            raise IndexError(f"internal doc id {i} out of range [0, {self.n_docs})")
        return bytes(self._doc_ids[i]).decode("utf-8")

    def raw_doc_ids(self, internal: np.ndarray) -> np.ndarray:
        """External ids as stored (utf-8 bytes, fixed width) for an array of internal ids,
        any shape; -1 (padding) maps to some id: callers mask it. One gather, no Python loop:
        what a shard sends its router."""
        if self.n_docs == 0:
            return np.zeros(np.shape(internal), dtype="S1")
        return self._doc_ids[np.maximum(np.asarray(internal), 0)]

    def doc_ids(self, internal: np.ndarray) -> list[str | None]:
        """External ids for an array of internal ids; -1 (padding) maps to None."""
        return [None if i < 0 else self.doc_id(int(i)) for i in np.asarray(internal).ravel()]

    def internal_id(self, ext: str) -> int | None:
        """Internal id of an external id, or None; binary search over the sorted-id order."""
        if self.n_docs == 0:
            return None
        raw = ext.encode("utf-8")
        if len(raw) > self._doc_ids.dtype.itemsize or b"\x00" in raw:
            return None  # longer than every stored id (the cast would truncate it), or has NUL
        key = np.array(raw, dtype=self._doc_ids.dtype)
        j = int(np.searchsorted(self._doc_ids, key, sorter=self._doc_ids_order))
        if j < self.n_docs:
            i = int(self._doc_ids_order[j])
            if self._doc_ids[i] == key:
                return i
        return None

    # ---------------------------------------------------------------- search
    def search(
        self,
        queries: SparseVectors,
        k: int = 10,
        *,
        method: str = "pruned",
        alpha: float = 1.0,
        term_fraction: float = 1.0,
        dead: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: internal ids int32 [nq, k] (-1 padded), float32 scores [nq, k].

        Order: score descending, ties by smaller internal doc id. method="pruned" (default,
        block-max pruning) returns exactly what method="exhaustive" returns as long as
        alpha=1 and term_fraction=1; alpha < 1 (stop earlier) and term_fraction < 1 (keep only
        the heaviest query terms) trade recall for speed. Scores are dequantized. dead (bool or
        uint8 by internal id, true = deleted) leaves those docs out: the exact top-k of the rest.
        """
        k = self._check_k(k)
        self._check_queries(queries)
        alpha, term_fraction = _check_knobs(method, alpha, term_fraction)
        dead = self._check_dead(dead)
        nq = len(queries)
        kk = min(k, self.n_docs)  # never allocate more result slots than docs
        if nq == 0 or kk == 0:
            return np.full((nq, k), -1, dtype=np.int32), np.zeros((nq, k), dtype=np.float32)
        if method == "pruned" and alpha == 1 and term_fraction == 1:
            method = "exhaustive" if self.n_docs < PRUNE_MIN_DOCS else method
        q = _kernel_queries(queries)
        p = self.kernel_postings
        if nq == 1 and method == "pruned":
            work = self._ws.one(int(q.terms.size))
            d, s, _ = search_pruned(q, p, dead, kk, alpha, term_fraction, work)
        elif nq == 1:
            work = self._ws.one(0)
            d, s = search_exhaustive(q, p, dead, kk, work.acc, work.touched)
        else:
            with _BATCH_LOCK:
                workers = min(nq, numba.get_num_threads())
                if method == "pruned":
                    n_terms = int(np.diff(q.indptr).max())
                    work = self._ws.rows(workers, n_terms)
                    d, s, _ = search_pruned_parallel(q, p, dead, kk, alpha, term_fraction, work)
                else:
                    work = self._ws.rows(workers, 0)
                    d, s = search_exhaustive_parallel(q, p, dead, kk, work.acc, work.touched)
        s *= np.float32(self._scale)
        if kk == k:
            return d, s
        ids = np.full((nq, k), -1, dtype=np.int32)
        scores = np.zeros((nq, k), dtype=np.float32)
        ids[:, :kk] = d
        scores[:, :kk] = s
        return ids, scores

    def pruning_stats(
        self, queries: SparseVectors, k: int = 10, *, alpha: float = 1.0, term_fraction: float = 1.0
    ) -> np.ndarray:
        """int64 [nq, 3] per query: candidate blocks, blocks scored, block rows read (a term
        decoded ahead counts every block).

        What the pruned search did, for benchmarks and tests (candidates - scored = skipped).
        """
        k = self._check_k(k)
        self._check_queries(queries)
        alpha, term_fraction = _check_knobs("pruned", alpha, term_fraction)
        if len(queries) == 0 or self.n_docs == 0:
            return np.zeros((len(queries), 3), dtype=np.int64)
        work = self._ws.one(int(np.diff(queries.indptr).max()))
        q, p = _kernel_queries(queries), self.kernel_postings
        _, _, stats = search_pruned(q, p, _NO_DEAD, min(k, self.n_docs), alpha, term_fraction, work)
        return stats

    def _dense_terms(self) -> tuple[np.ndarray, ...]:
        """kernels.dense_terms of this index, built on first use (a fraction of a second)."""
        if self._dense is None:
            with self._decode_lock:
                if self._dense is None:
                    need = max(1, int(np.ceil(DENSE_ROW_BYTES_PER_BLOCK * self._n_blocks)))
                    out = dense_terms(
                        self._term_ptr, self._block_ptr, self._block_rows, self._post_docs,
                        self._post_impacts, self._block_size, self._n_blocks, need,
                    )  # fmt: skip
                    out = narrow_slots(out, self._block_size)
                    for a in out:
                        a.setflags(write=False)
                    self._dense = out
        return self._dense

    def term_weights(self, doc_internal_id: int, term_ids: np.ndarray) -> np.ndarray:
        """Dequantized weights of `term_ids` in one doc (0 where absent); powers "explain"."""
        d = int(doc_internal_id)
        if not 0 <= d < self.n_docs:
            raise IndexError(f"internal doc id {d} out of range [0, {self.n_docs})")
        terms = np.asarray(term_ids, dtype=np.int64).ravel()
        if terms.size and (terms.min() < 0 or terms.max() >= self.vocab_size):
            raise ValueError(f"term ids must lie in [0, {self.vocab_size})")
        imp = lookup_impacts(
            self._term_ptr, self._block_ptr, self._block_rows, self._post_docs,
            self._post_impacts, self._block_size, int(self._doc_slot[d]), terms,
        )  # fmt: skip
        out = imp.astype(np.float32) * np.float32(self._scale)
        out[imp == 0] = 0
        return out

    def brute_force(
        self, queries: SparseVectors, k: int = 10, *, dead: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reference top-k (index/oracle.py): what search() must return, from scipy."""
        k = self._check_k(k)
        self._check_queries(queries)
        live = None if dead is None else self._check_dead(dead) == 0
        return brute_force(self.postings, self.n_docs, self._scale, queries, k, live)

    # ---------------------------------------------------------------- checks
    def _check_dead(self, dead: np.ndarray | None) -> np.ndarray:
        """A deletion mask as the kernels take it: uint8 [n_docs], or empty for none."""
        if dead is None:
            return _NO_DEAD
        d = np.asarray(dead)
        if d.shape != (self.n_docs,) or d.dtype not in (np.bool_, np.uint8):
            raise ValueError(
                f"dead must be bool or uint8 of shape ({self.n_docs},), got {d.dtype}{d.shape}"
            )
        out = np.ascontiguousarray(d.view(np.uint8) if d.dtype == np.bool_ else d).view()
        out.setflags(write=False)
        return out

    @staticmethod
    def _check_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        return int(k)

    def _check_queries(self, queries: SparseVectors) -> None:
        if not isinstance(queries, SparseVectors):
            raise TypeError(f"queries must be SparseVectors, got {type(queries).__name__}")
        if queries.nnz:
            lo, hi = int(queries.indices.min()), int(queries.indices.max())
            if lo < 0 or hi >= self.vocab_size:
                bad = hi if hi >= self.vocab_size else lo
                raise ValueError(
                    f"query term id {bad} is outside this index's vocabulary "
                    f"[0, {self.vocab_size}); was the query encoded with a different encoder?"
                )

    def close(self) -> None:
        if self._docstore is not None:
            self._docstore.close()

    def __repr__(self) -> str:
        return (
            f"SparseIndex({str(self.path)!r}, n_docs={self.n_docs}, vocab_size={self.vocab_size},"
            f" n_postings={self.n_postings})"
        )


def _check_knobs(method: str, alpha: float, term_fraction: float) -> tuple[float, float]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    alpha, term_fraction = float(alpha), float(term_fraction)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    if not 0 < term_fraction <= 1:
        raise ValueError(f"term_fraction must lie in (0, 1], got {term_fraction!r}")
    if method == "exhaustive" and (alpha != 1 or term_fraction != 1):
        raise ValueError("alpha and term_fraction apply to method='pruned' only")
    return alpha, term_fraction


def _kernel_queries(queries: SparseVectors) -> Queries:
    return Queries(
        np.ascontiguousarray(queries.indptr, dtype=np.int64),
        np.ascontiguousarray(queries.indices, dtype=np.int32),
        np.ascontiguousarray(queries.data, dtype=np.float32),
    )
