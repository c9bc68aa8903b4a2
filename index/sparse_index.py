"""SparseIndex: open a built index (mmap by default) and search it with the Numba kernels.

Why the checks split the way they do: size, dtype and shape are read from headers and stat(),
so they run on every open and catch truncation or a swapped file for free; hashing reads every
byte, so it runs only with verify=True.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from index.docstore import DocStore
from index.errors import REBUILD_HINT, CorruptIndexError
from index.format import (
    DOC_IDS,
    DOC_IDS_ORDER,
    ENCODER_DIR,
    POST_DOCS,
    POST_IMPACTS,
    TERM_PTR,
    check_files,
    load_array,
    read_manifest,
)
from kernels import search_batch, search_one
from sparseretr.sparse import SparseVectors

# One parallel batch at a time per process: each batch already uses every Numba thread, and the
# workqueue threading layer (the fallback when neither TBB nor OpenMP is present) aborts on
# concurrent parallel launches. search_one is nogil and runs concurrently without the lock.
_BATCH_LOCK = threading.Lock()


class SparseIndex:
    """Read-only impact index: postings + external ids + optional doc store."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        term_ptr: np.ndarray,
        post_docs: np.ndarray,
        post_impacts: np.ndarray,
        doc_ids: np.ndarray,
        doc_ids_order: np.ndarray,
        docstore: DocStore | None,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._term_ptr = term_ptr
        self._post_docs = post_docs
        self._post_impacts = post_impacts
        self._doc_ids = doc_ids
        self._doc_ids_order = doc_ids_order
        self._docstore = docstore
        self._scale = float(manifest["quantization"]["scale"])

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, path: str | Path, *, mmap: bool = True, verify: bool = False) -> SparseIndex:
        """Open an index folder; verify=True also checks every file's sha256 and id ranges."""
        root = Path(path)
        manifest = read_manifest(root)
        check_files(root, manifest, verify=verify)
        files = manifest["files"]
        arrays = {
            name: load_array(root, name, files[name], mmap=mmap)
            for name in (TERM_PTR, POST_DOCS, POST_IMPACTS, DOC_IDS, DOC_IDS_ORDER)
        }
        n_docs, vocab = int(manifest["n_docs"]), int(manifest["vocab_size"])
        n_post = int(manifest["n_postings"])
        tp = arrays[TERM_PTR]
        if (
            tp.shape != (vocab + 1,)
            or tp[0] != 0
            or tp[-1] != n_post
            or arrays[POST_DOCS].shape != (n_post,)
            or arrays[POST_IMPACTS].shape != (n_post,)
            or arrays[DOC_IDS].shape != (n_docs,)
            or arrays[DOC_IDS_ORDER].shape != (n_docs,)
        ):
            raise CorruptIndexError(
                f"{root}: array shapes disagree with the manifest counts; {REBUILD_HINT}"
            )
        if verify:
            _verify_ranges(root, tp, arrays[POST_DOCS], arrays[POST_IMPACTS], n_docs)
        store = None
        if manifest.get("docstore"):
            store = DocStore(root / manifest["docstore"], readonly=True)
        return cls(
            root,
            manifest,
            tp,
            arrays[POST_DOCS],
            arrays[POST_IMPACTS],
            arrays[DOC_IDS],
            arrays[DOC_IDS_ORDER],
            store,
        )

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
    def docstore(self) -> DocStore | None:
        return self._docstore

    @property
    def postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term_ptr, post_docs, post_impacts), read-only; for benchmarks and other kernels."""
        return self._term_ptr, self._post_docs, self._post_impacts

    # ------------------------------------------------------------------- ids
    def doc_id(self, i: int) -> str:
        """External id of internal doc i."""
        if not 0 <= i < self.n_docs:
            raise IndexError(f"internal doc id {i} out of range [0, {self.n_docs})")
        return bytes(self._doc_ids[i]).decode("utf-8")

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
    def search(self, queries: SparseVectors, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: internal ids int32 [nq, k] (-1 padded), float32 scores [nq, k].

        Order: score descending, ties by smaller internal doc id. Exact (no pruning) over the
        quantized weights; scores are dequantized.
        """
        k = self._check_k(k)
        self._check_queries(queries)
        nq = len(queries)
        ids = np.full((nq, k), -1, dtype=np.int32)
        scores = np.zeros((nq, k), dtype=np.float32)
        kk = min(k, self.n_docs)  # never allocate more result slots than docs
        if nq == 0 or kk == 0:
            return ids, scores
        q_terms = np.ascontiguousarray(queries.indices, dtype=np.int32)
        q_weights = np.ascontiguousarray(queries.data, dtype=np.float32)
        tp, pd, pi = self._term_ptr, self._post_docs, self._post_impacts
        if nq == 1:
            d, s = search_one(q_terms, q_weights, tp, pd, pi, self.n_docs, kk)
            ids[0, : d.size] = d
            scores[0, : s.size] = s
        else:
            q_ptr = np.ascontiguousarray(queries.indptr, dtype=np.int64)
            with _BATCH_LOCK:
                n_chunks = numba.get_num_threads()
                d, s = search_batch(
                    q_ptr, q_terms, q_weights, tp, pd, pi, self.n_docs, kk, n_chunks
                )
            ids[:, :kk] = d
            scores[:, :kk] = s
        scores *= np.float32(self._scale)
        return ids, scores

    def term_weights(self, doc_internal_id: int, term_ids: np.ndarray) -> np.ndarray:
        """Dequantized weights of `term_ids` in one doc (0 where absent); powers "explain"."""
        d = int(doc_internal_id)
        if not 0 <= d < self.n_docs:
            raise IndexError(f"internal doc id {d} out of range [0, {self.n_docs})")
        terms = np.asarray(term_ids, dtype=np.int64).ravel()
        if terms.size and (terms.min() < 0 or terms.max() >= self.vocab_size):
            raise ValueError(f"term ids must lie in [0, {self.vocab_size})")
        out = np.zeros(terms.size, dtype=np.float32)
        for j, t in enumerate(terms):
            a, b = int(self._term_ptr[t]), int(self._term_ptr[t + 1])
            p = a + int(np.searchsorted(self._post_docs[a:b], d))
            if p < b and self._post_docs[p] == d:
                out[j] = np.float32(self._post_impacts[p]) * np.float32(self._scale)
        return out

    def brute_force(self, queries: SparseVectors, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Reference top-k via a scipy product with the doc-term matrix; same shapes and order.

        The scale is factored out (Q @ impacts.T, then * scale, like the kernel) and ranking uses
        the float32 pre-scale score, so exact ties fall exactly as in search(). The float64 sum
        can differ from the kernel's float32 sum in the last bits for non-dyadic query weights.
        """
        k = self._check_k(k)
        self._check_queries(queries)
        nq = len(queries)
        ids = np.full((nq, k), -1, dtype=np.int32)
        scores = np.zeros((nq, k), dtype=np.float32)
        if nq == 0 or self.n_docs == 0:
            return ids, scores
        docs_by_term = sp.csr_matrix(
            (
                np.asarray(self._post_impacts, dtype=np.float64),
                np.asarray(self._post_docs),
                np.asarray(self._term_ptr),
            ),
            shape=(self.vocab_size, self.n_docs),
        )
        q = queries.to_scipy().astype(np.float64)
        q.data[q.data <= 0] = 0  # the kernel ignores non-positive query weights
        prod = sp.csr_matrix(q @ docs_by_term)
        for r in range(nq):
            a, b = prod.indptr[r], prod.indptr[r + 1]
            cols = prod.indices[a:b].astype(np.int32)
            vals = prod.data[a:b].astype(np.float32)
            keep = vals > 0
            cols, vals = cols[keep], vals[keep]
            order = np.lexsort((cols, -vals))[:k]
            ids[r, : order.size] = cols[order]
            scores[r, : order.size] = vals[order] * np.float32(self._scale)
        return ids, scores

    # ---------------------------------------------------------------- checks
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


def _verify_ranges(
    root: Path, term_ptr: np.ndarray, post_docs: np.ndarray, post_impacts: np.ndarray, n: int
) -> None:
    """Full scans that keep the unchecked kernels in bounds; only worth it with verify=True."""
    ok = bool(np.all(np.diff(term_ptr) >= 0))
    if post_docs.size:
        ok = ok and int(post_docs.min()) >= 0 and int(post_docs.max()) < n
        ok = ok and int(post_impacts.min()) >= 1
    if not ok:
        raise CorruptIndexError(f"{root}: postings hold out-of-range values; {REBUILD_HINT}")
