"""Numba kernels on plain arrays: exact impact-postings scoring and bounded top-k.

No I/O and no objects here, so the hot path stays compilable and the index layer stays swappable.
Result order everywhere: score descending, ties broken by smaller doc id first.
"""

from kernels.taat import search_batch, search_one, topk_touched

__all__ = ["search_batch", "search_one", "topk_touched"]
