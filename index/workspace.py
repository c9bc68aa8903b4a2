"""Per-thread search scratch for the kernels (kernels.Workspace), kept between queries."""

from __future__ import annotations

import threading

import numpy as np
from sparseretr.kernels import Workspace, pruned_table_size


class ThreadWorkspaces(threading.local):
    """Each thread's kernels.Workspace, one row per batch worker; a single query uses row 0.

    Allocating it per query (several MB at 1M docs) would cost more in page faults than the
    pruned search itself, and per batch a measurable share of a batch's time (benchmarks/
    README.md, "Measurements behind code choices"). Sharing row 0
    between a thread's single queries and its batches keeps one worker's copy (8 bytes per
    doc and the touched part of the table) out of resident memory; rows never used stay
    unmapped.
    """

    def __init__(self, n_blocks: int, n_docs: int) -> None:
        self.n_blocks, self.n_docs = n_blocks, n_docs
        self.arrays: tuple[np.ndarray, ...] = ()  # ub, tab, gen, cand, acc, touched
        self.tab_terms = 0
        self._one: Workspace | None = None  # row 0 of arrays, while they stay the same

    def rows(self, rows: int, n_terms: int) -> Workspace:
        """This thread's workspace with `rows` rows per array (one per batch worker), tables
        fitting queries of n_terms terms."""
        nb, n = self.n_blocks, self.n_docs
        if not self.arrays or self.arrays[0].shape[0] < rows:
            self.arrays = (
                np.zeros((rows, nb), dtype=np.float32),
                np.zeros((rows, 0), dtype=np.int64),
                np.zeros((rows, 1), dtype=np.int64),
                np.empty((rows, nb), dtype=np.int32),
                np.zeros((rows, n), dtype=np.float32),
                np.empty((rows, n), dtype=np.int32),
            )
            self.tab_terms = 0
            self._one = None
        if self.tab_terms < n_terms:
            # Sized for the worst case, grown by doubling; pages never written stay unmapped.
            self.tab_terms = max(n_terms, 2 * self.tab_terms, 16)
            a = self.arrays
            tab = np.zeros((a[0].shape[0], pruned_table_size(self.tab_terms, nb)), dtype=np.int64)
            a[2][:] = 0  # fresh tables: stamps restart
            self.arrays = (a[0], tab, *a[2:])
            self._one = None
        return Workspace(*(a[:rows] for a in self.arrays))

    def one(self, n_terms: int) -> Workspace:
        """Row 0 of each array: a single query's workspace (kept: a query's hot path)."""
        if self._one is None or self.tab_terms < n_terms:
            self.rows(1, n_terms)
            self._one = Workspace(*(a[0] for a in self.arrays))
        return self._one
