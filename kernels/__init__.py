"""Numba kernels on plain arrays: exact and block-max pruned top-k over compact impact postings.

No I/O and no objects here, so the hot path stays compilable and the index layer stays swappable.
Result order everywhere: score descending, ties broken by the smaller internal doc id first.
"""

from sparseretr.kernels.scoring import (
    Postings,
    Queries,
    Workspace,
    dense_terms,
    narrow_slots,
    pruned_table_size,
    search_exhaustive,
    search_exhaustive_parallel,
    search_pruned,
    search_pruned_parallel,
)

__all__ = [
    "Postings",
    "Queries",
    "Workspace",
    "dense_terms",
    "narrow_slots",
    "pruned_table_size",
    "search_exhaustive",
    "search_exhaustive_parallel",
    "search_pruned",
    "search_pruned_parallel",
]
