"""The record every vector file format reads into and writes from: one document, token-keyed.

Token strings, not term ids, cross the boundary: ids belong to one tokenizer's vocabulary,
tokens are what Anserini, OpenSearch and other tools store and what a user can read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sparseretr.index.errors import UserInputError
from sparseretr.index.vectors import SparseVectors


@dataclass
class VectorRow:
    id: str
    vector: dict[str, float]  # token -> weight (> 0)
    title: str = ""
    text: str = ""
    metadata: dict = field(default_factory=dict)


def to_sparse(
    rows: Iterable[VectorRow], token_to_id: Mapping[str, int], vocab_size: int, where: str
) -> SparseVectors:
    """Map token-keyed rows onto a vocabulary; a token outside it is an error, not a drop."""
    out, unknown = [], {}
    for row in rows:
        ids, weights = [], []
        for token, w in row.vector.items():
            tid = token_to_id.get(token)
            if tid is None or tid >= vocab_size:
                unknown.setdefault(token, row.id)
                continue
            if not (isinstance(w, int | float) and np.isfinite(w)) or isinstance(w, bool):
                raise UserInputError(f"{where}: document {row.id!r}: weight of {token!r} is {w!r}")
            if w > 0:
                ids.append(tid)
                weights.append(float(w))
        order = np.argsort(ids, kind="stable")
        out.append((np.asarray(ids, np.int32)[order], np.asarray(weights, np.float32)[order]))
    if unknown:
        sample = ", ".join(f"{t!r} (doc {d!r})" for t, d in list(unknown.items())[:5])
        raise UserInputError(
            f"{where}: {len(unknown)} token(s) are not in the encoder's vocabulary, e.g. {sample};"
            " pass the --model whose tokenizer wrote these vectors"
        )
    return SparseVectors.from_rows(out, vocab_size)
