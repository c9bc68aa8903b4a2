"""Training objectives for learned sparse retrieval: ranking, distillation and sparsity.

Pure tensor maths with no model code, so that every formula is unit-tested on hand-computed
values and shared by the siamese and the inference-free trainers.

Batch layout used throughout: B queries; documents grouped per query, [B * G, V] with G = 1 +
negatives, each group's first row the query's positive; "group scores" are [B, G], positive
in column 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

ACTIVATIONS = ("log1p", "log1p_log1p")


# -- representations ---------------------------------------------------------------------------
def splade_activation(x: Tensor, activation: str = "log1p") -> Tensor:
    """SPLADE's log(1 + ReLU(x)); "log1p_log1p" applies log1p twice (the l0-style activation).

    The second log1p flattens large weights towards 1, so a document's weight mass, and with it
    FLOPS, tracks its number of non-zeros (an l0 count) rather than the size of its weights.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    w = torch.log1p(torch.relu(x))
    return torch.log1p(w) if activation == "log1p_log1p" else w


def idf_query_vectors(
    token_ids: Sequence[Sequence[int]], idf: Tensor, *, binary: bool = False
) -> Tensor:
    """Inference-free queries: [B, V] with idf(t) on each distinct query token, 0 elsewhere.

    The same vectors as InferenceFreeEncoder.encode_queries (tokens with idf <= 0 drop out), but
    as a tensor, so that `idf` may be a learned parameter. binary=True gives every token with
    idf > 0 the weight 1: the "plain FLOPS" ablation with uniform query weights.
    """
    rows = [i for i, ids in enumerate(token_ids) for _ in set(ids)]
    cols = [t for ids in token_ids for t in set(ids)]
    hot = torch.zeros(len(token_ids), idf.shape[0], device=idf.device, dtype=idf.dtype)
    if cols:
        hot[torch.tensor(rows), torch.tensor(cols)] = 1.0
    w = torch.relu(idf)
    return hot * (w > 0).to(w.dtype) if binary else hot * w


# -- ranking -----------------------------------------------------------------------------------
def info_nce(
    scores: Tensor, labels: Tensor, temperature: float = 1.0, mask: Tensor | None = None
) -> Tensor:
    """Mean cross-entropy of each row's label column among its candidates (scores [B, C]).

    mask [B, C], True = drop that candidate (a judged positive of the query that is not its
    label would otherwise be pushed down as a negative).
    """
    logits = scores / temperature
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)


def contrastive_loss(
    queries: Tensor,
    docs: Tensor,
    group_size: int,
    *,
    temperature: float = 1.0,
    in_batch: bool = True,
    mask: Tensor | None = None,
) -> Tensor:
    """InfoNCE with hard negatives and, when in_batch, every other query's documents too.

    queries [B, V], docs [B * group_size, V] grouped per query, positive first; mask as in
    info_nce over the [B, B * group_size] in-batch score matrix.
    """
    b = queries.shape[0]
    if docs.shape[0] != b * group_size:
        raise ValueError(f"docs has {docs.shape[0]} rows, expected {b} x {group_size}")
    scores = queries @ docs.T  # [B, B*G]
    if in_batch:
        labels = torch.arange(b, device=scores.device) * group_size
        return info_nce(scores, labels, temperature, mask)
    own = group_scores(scores, group_size)
    own_mask = None if mask is None else group_scores(mask, group_size)
    return info_nce(
        own, torch.zeros(b, dtype=torch.long, device=scores.device), temperature, own_mask
    )


def group_scores(scores: Tensor, group_size: int) -> Tensor:
    """From the in-batch [B, B*G] matrix, each query's own group: [B, G], positive first."""
    b = scores.shape[0]
    idx = torch.arange(b, device=scores.device)[:, None] * group_size + torch.arange(
        group_size, device=scores.device
    )
    return scores.gather(1, idx)


def margin_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """MarginMSE: the student's margins pos - neg_j regress onto the teacher's ([B, G] each)."""
    s = student[:, :1] - student[:, 1:]
    t = teacher[:, :1] - teacher[:, 1:]
    return F.mse_loss(s, t.to(s.dtype))


def kl_distillation(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(p_teacher || p_student) over each query's candidates, averaged over queries.

    teacher holds target logits (normalized, weighted, scaled teacher scores), [B, G].
    """
    log_p_s = F.log_softmax(student / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


# -- sparsity ------------------------------------------------------------------------------------
def flops(reps: Tensor, nnz_threshold: int | None = None) -> Tensor:
    """FLOPS regularizer: sum over the vocabulary of (mean over the batch of |w|)^2.

    nnz_threshold (the l0-mask variant): only rows with more than that many non-zeros count,
    so documents already sparse enough are left to the ranking loss. The mean still divides by
    the whole batch, so the penalty fades smoothly as rows fall under the threshold.
    """
    w = reps.abs()
    if nnz_threshold is not None:
        keep = ((reps != 0).sum(-1) > nnz_threshold).to(w.dtype)
        w = w * keep[:, None]
    return (w.mean(0) ** 2).sum()


def flops_weight(lam: float, step: int, warmup_steps: int) -> float:
    """Quadratic warm-up lambda_t = lambda * min(1, t / T)^2: ranking is learnt before sparsity."""
    if warmup_steps <= 0:
        return float(lam)
    return float(lam) * min(1.0, step / warmup_steps) ** 2


@dataclass(frozen=True)
class FlopsSchedule:
    """Separate document and query lambdas sharing one warm-up."""

    doc: float = 0.0
    query: float = 0.0
    warmup_steps: int = 0

    def __call__(self, step: int) -> tuple[float, float]:
        return (
            flops_weight(self.doc, step, self.warmup_steps),
            flops_weight(self.query, step, self.warmup_steps),
        )


# IDF-aware FLOPS (inference-free models). Queries are fixed vectors q_t = idf(t), so
# relevance s(q, d) = sum_t idf(t) * d_t and d s / d d_t = idf(t); FLOPS is applied to documents
# only. The paper's mechanism in two lines:
#   the ranking gradient on document weight d_t is scaled by idf(t) while the FLOPS gradient
#   is not, so on low-IDF tokens the regularizer wins and drives them out of the documents.
# Nothing more is needed than scoring with idf_query_vectors and flops(docs): the trainer does
# exactly that (query_weights="idf"); query_weights="uniform" is the plain-FLOPS ablation.
