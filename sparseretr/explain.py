"""Why a document matched: the tokens a query and a document share, with both weights.

Reads the stored impacts of each hit (SparseIndex.term_weights), so it shows what the index
scored, quantization included, not a re-encoding of the document.
"""

from __future__ import annotations

from typing import Any

from sparseretr.encoders import SparseEncoder
from sparseretr.fusion import FusedHit
from sparseretr.index.segments import SegHit, Snapshot
from sparseretr.index.vectors import SparseVectors


def explain_hits(
    snap: Snapshot,
    side: str,
    encoder: SparseEncoder,
    qvecs: SparseVectors,
    qi: int,
    fused: list[FusedHit],
    hits: dict[str, list[list[SegHit]]],
) -> dict[str, list[dict[str, Any]]]:
    """Per fused hit of query qi, the matched tokens with query and document weights,
    heaviest contribution first. Dense rows share the sparse numbering, so a dense-only
    hybrid hit still shows its tokens."""
    where = {h.id: (h.segment, h.internal) for run in hits.values() for h in run[qi]}
    terms, qw = qvecs.row(qi)
    out = {}
    for h in fused:
        si, internal = where[h.id]
        dw = snap.term_weights(side, si, internal, terms)
        keep = dw > 0
        rows = [
            {
                "token": t,
                "query_weight": float(a),
                "doc_weight": float(b),
                "contribution": float(a * b),
            }
            for t, a, b in zip(encoder.tokens(terms[keep]), qw[keep], dw[keep], strict=True)
        ]
        out[h.id] = sorted(rows, key=lambda r: -r["contribution"])
    return out
