"""Which segments to merge next: a pure function of the segments, so it is tested alone."""

from __future__ import annotations

from collections.abc import Sequence

from sparseretr.index.segments import Segment


def pick_merge(
    segments: Sequence[Segment], *, max_segments: int, merge_factor: int, expunge_ratio: float
) -> list[Segment]:
    """Past max_segments, the merge_factor adjacent segments with the fewest live docs
    (adjacent, as in Lucene's log merge policy: documents keep their order, so even ties rank
    the same after a merge); otherwise the segment with the largest share of deleted docs once
    it passes expunge_ratio, so deletes stop costing search time and disk; else nothing."""
    segs = list(segments)
    if len(segs) > max_segments:
        f = min(merge_factor, len(segs))
        start = min(range(len(segs) - f + 1), key=lambda a: sum(s.n_live for s in segs[a : a + f]))
        return segs[start : start + f]
    worst = max(segs, key=lambda s: s.n_deleted / max(s.n_docs, 1), default=None)
    if worst is not None and worst.n_deleted >= expunge_ratio * max(worst.n_docs, 1):
        return [worst]
    return []
