"""Losses on hand-computed values, and the IDF-aware FLOPS mechanism checked numerically."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseretr.losses import (
    FlopsSchedule,
    contrastive_loss,
    flops,
    flops_weight,
    group_scores,
    idf_query_vectors,
    info_nce,
    kl_distillation,
    margin_mse,
    splade_activation,
)

T = torch.tensor


def close(a: torch.Tensor, b: float, tol: float = 1e-6) -> None:
    assert float(a) == pytest.approx(b, abs=tol)


def test_splade_activation():
    x = T([-1.0, 0.0, math.e - 1])
    assert torch.allclose(splade_activation(x), T([0.0, 0.0, 1.0]))
    assert torch.allclose(splade_activation(x, "log1p_log1p"), T([0.0, 0.0, math.log(2)]))
    with pytest.raises(ValueError):
        splade_activation(x, "gelu")


def test_info_nce_and_mask():
    scores = T([[2.0, 0.0], [0.0, 0.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    close(info_nce(scores, T([0, 1])), expected)
    close(
        info_nce(scores, T([0, 1]), temperature=2.0), (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    )
    # A masked candidate is not a negative: row 1 is left with its label only -> loss 0.
    mask = T([[False, False], [True, False]])
    close(info_nce(scores, T([0, 1]), mask=mask), math.log(1 + math.exp(-2)) / 2)


def _pair():
    q = T([[1.0, 0.0], [0.0, 1.0]])
    docs = T([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])  # q0: pos, neg; q1: pos, neg
    return q, docs


def test_contrastive_in_batch_and_hard_negatives():
    q, docs = _pair()
    e = math.exp
    l0 = -math.log(e(2) / (e(2) + e(1) + 1 + 1))  # q0 scores all 4 docs: [2, 1, 0, 0]
    l1 = -math.log(e(3) / (1 + 1 + e(3) + e(1)))  # q1: [0, 0, 3, 1], label column 2
    close(contrastive_loss(q, docs, 2), (l0 + l1) / 2)
    own = (math.log(1 + e(-1)) + math.log(1 + e(-2))) / 2  # own group only
    close(contrastive_loss(q, docs, 2, in_batch=False), own)
    with pytest.raises(ValueError):
        contrastive_loss(q, docs[:3], 2)


def test_group_scores():
    scores = torch.arange(8.0).reshape(2, 4)
    assert group_scores(scores, 2).tolist() == [[0.0, 1.0], [6.0, 7.0]]


def test_margin_mse():
    # student margins [3-1, 3-2] = [2, 1]; teacher [1, 1]: ((2-1)^2 + 0) / 2
    close(margin_mse(T([[3.0, 1.0, 2.0]]), T([[2.0, 1.0, 1.0]])), 0.5)


def test_kl_distillation():
    teacher = T([[math.log(3.0), 0.0]])  # p_t = [3/4, 1/4]
    student = T([[0.0, 0.0]])  # p_s = [1/2, 1/2]
    close(kl_distillation(student, teacher), 0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    close(kl_distillation(teacher, teacher), 0.0)
    # temperature 2 halves the teacher logit: p_t = [sqrt3, 1] / (sqrt3 + 1)
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    expected = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    close(kl_distillation(student, teacher, temperature=2.0), expected)


def test_flops_and_l0_mask():
    reps = T([[1.0, 0.0, -2.0], [3.0, 0.0, 0.0]])
    close(flops(reps), 2.0**2 + 0 + 1.0**2)  # batch means of |w|: [2, 0, 1]
    # Row 1 has 1 non-zero (not > 1): only row 0 counts, still divided by the batch of 2.
    close(flops(reps, nnz_threshold=1), 0.5**2 + 1.0**2)
    close(flops(reps, nnz_threshold=2), 0.0)


def test_flops_quadratic_warmup():
    assert flops_weight(2.0, 0, 10) == 0.0
    assert flops_weight(2.0, 5, 10) == pytest.approx(0.5)
    assert flops_weight(2.0, 10, 10) == 2.0
    assert flops_weight(2.0, 50, 10) == 2.0
    assert flops_weight(2.0, 0, 0) == 2.0
    assert FlopsSchedule(doc=1.0, query=4.0, warmup_steps=2)(1) == (0.25, 1.0)


def test_idf_query_vectors():
    idf = torch.zeros(8)
    idf[3], idf[5] = 2.0, 0.5
    q = idf_query_vectors([[5, 3, 5, 0], []], idf)  # duplicates count once; idf 0 drops out
    expected = torch.zeros(2, 8)
    expected[0, 3], expected[0, 5] = 2.0, 0.5
    assert torch.equal(q, expected)
    binary = idf_query_vectors([[5, 3, 5, 0]], idf, binary=True)
    assert binary[0].nonzero().flatten().tolist() == [3, 5]
    assert binary.sum() == 2.0


def test_ranking_gradient_scales_with_idf():
    """d loss / d d_t = (d loss / d score) * idf(t): autograd and finite differences agree."""
    torch.manual_seed(0)
    v, g = 12, 3
    idf = torch.rand(v, dtype=torch.float64) * 5 + 0.1
    tokens = [2, 5, 7, 11]
    docs = torch.rand(g, v, dtype=torch.float64, requires_grad=True)

    def loss_of(d: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(idf_query_vectors([tokens], idf), d, g)

    loss_of(docs).backward()
    grad = docs.grad
    for j in range(g):
        ratio = grad[j, tokens] / idf[tokens]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-9)
        others = [t for t in range(v) if t not in tokens]
        assert torch.all(grad[j, others] == 0)
    # Finite differences on the positive's weights: proportional to idf as well.
    eps = 1e-6
    fd = []
    for t in tokens:
        bump = torch.zeros_like(docs)
        bump[0, t] = eps
        with torch.no_grad():
            fd.append(float((loss_of(docs + bump) - loss_of(docs - bump)) / (2 * eps)))
    fd_t = torch.tensor(fd, dtype=torch.float64)
    assert torch.allclose(fd_t, grad[0, tokens], rtol=1e-5)
    assert torch.allclose(
        fd_t / idf[tokens], (fd_t / idf[tokens])[0].expand(len(tokens)), rtol=1e-5
    )


def test_flops_drives_out_low_idf_tokens():
    """Same document weight, same FLOPS gradient; ranking pull ~ idf: the regularizer wins on
    the low-IDF token (weight pushed down) and loses on the high-IDF one (weight pushed up)."""
    idf = torch.tensor([0.05, 6.0, 0.0, 0.0], dtype=torch.float64)
    docs = torch.tensor(
        [[0.2, 0.2, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True
    )
    q = idf_query_vectors([[0, 1]], idf)
    loss = contrastive_loss(q, docs, 2) + 0.5 * flops(docs)
    loss.backward()
    low, high = docs.grad[0, 0], docs.grad[0, 1]
    assert low > 0 > high  # gradient descent lowers the low-IDF weight, raises the high-IDF one


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=2, max_size=6),
    st.lists(st.floats(-5, 5), min_size=2, max_size=6),
    st.floats(0.1, 4.0),
)
def test_kl_nonnegative_and_flops_quadratic(s, t, c):
    n = min(len(s), len(t))
    student, teacher = T([s[:n]]), T([t[:n]])
    assert float(kl_distillation(student, teacher)) >= -1e-6
    reps = torch.stack([student[0], teacher[0]])
    assert float(flops(c * reps)) == pytest.approx(c * c * float(flops(reps)), rel=1e-4, abs=1e-5)
