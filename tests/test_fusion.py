"""Fusion on hand-made runs: every expected value below is computed by hand in the comments."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparseretr.fusion import DEFAULTS, FusedHit, convex, hybrid_weights, make_fuser, rrf, single

# Two systems, four docs; d1 and d3 swap ranks 1 and 3, d2 and d4 both sit at rank 2.
A = [("d1", 9.0), ("d2", 5.0), ("d3", 1.0)]
B = [("d3", 0.9), ("d4", 0.8), ("d1", 0.1)]

# For convex: sparse norm a=1, b=.5, c=0 (missing d -> 0); dense norm b=1, d=.5, a=0 (c -> 0).
SPARSE = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
DENSE = [("b", 0.9), ("d", 0.7), ("a", 0.5)]
Z = math.sqrt(1.5)  # z-scores of three equally spaced values: -Z, 0, +Z


def ids(hits: list[FusedHit]) -> list[str]:
    return [h.id for h in hits]


def scores(hits: list[FusedHit]) -> dict[str, float]:
    return {h.id: h.score for h in hits}


def test_rrf_formula_and_ties() -> None:
    hits = rrf({"a": A, "b": B}, k=1)
    # d1 = 1/(1+1) + 1/(1+3) = .75 = d3; d2 = 1/3 = d4; ties go to the smaller id.
    assert ids(hits) == ["d1", "d3", "d2", "d4"]
    assert scores(hits) == pytest.approx({"d1": 0.75, "d3": 0.75, "d2": 1 / 3, "d4": 1 / 3})
    assert hits[0].score == hits[1].score  # an exact tie, not a near one
    hits60 = rrf({"a": A, "b": B}, k=60)
    assert scores(hits60)["d1"] == pytest.approx(1 / 61 + 1 / 63)
    k0 = DEFAULTS["rrf_k"]  # the default is the service's, chosen on train: one source
    assert scores(rrf({"a": A, "b": B}))["d1"] == pytest.approx(1 / (k0 + 1) + 1 / (k0 + 3))


def test_rrf_components_and_weights() -> None:
    hits = rrf({"a": A, "b": B}, k=1, weights={"a": 2.0})
    # d1 = 2/2 + 1/4 = 1.25; d3 = 2/4 + 1/2 = 1.0; d2 = 2/3; d4 = 1/3.
    assert ids(hits) == ["d1", "d3", "d2", "d4"]
    assert scores(hits) == pytest.approx({"d1": 1.25, "d3": 1.0, "d2": 2 / 3, "d4": 1 / 3})
    d4 = hits[-1]
    assert d4.components == {
        "a": {"score": None, "rank": None},
        "b": {"score": 0.8, "rank": 2},
    }


def test_zero_weight_drops_that_systems_candidates() -> None:
    assert ids(rrf({"a": A, "b": B}, weights={"b": 0})) == ["d1", "d2", "d3"]
    assert ids(convex({"sparse": SPARSE, "dense": DENSE}, alpha=1.0)) == ["a", "b", "c"]
    assert ids(convex({"sparse": SPARSE, "dense": DENSE}, alpha=0.0)) == ["b", "d", "a"]
    for norm in ("minmax", "zscore"):
        hits = convex({"sparse": SPARSE, "dense": DENSE}, alpha=1.0, normalization=norm)
        assert ids(hits) == ids(single("sparse", SPARSE))


def test_convex_minmax_by_hand() -> None:
    hits = convex({"sparse": SPARSE, "dense": DENSE}, alpha=0.25)
    # .25 * sparse + .75 * dense: a = .25, b = .125 + .75, c = 0 (missing dense -> 0), d = .375
    assert ids(hits) == ["b", "d", "a", "c"]
    assert scores(hits) == pytest.approx({"a": 0.25, "b": 0.875, "c": 0.0, "d": 0.375})
    by_weights = convex({"sparse": SPARSE, "dense": DENSE}, weights={"sparse": 0.25, "dense": 0.75})
    assert scores(by_weights) == scores(hits)


def test_convex_zscore_by_hand() -> None:
    hits = convex({"sparse": SPARSE, "dense": DENSE}, alpha=0.25, normalization="zscore")
    # sparse z: a=+Z b=0 c=-Z, missing d -> min = -Z; dense z: b=+Z d=0 a=-Z, missing c -> -Z
    assert ids(hits) == ["b", "d", "a", "c"]
    assert scores(hits) == pytest.approx({"a": -0.5 * Z, "b": 0.75 * Z, "c": -Z, "d": -0.25 * Z})


def test_convex_missing_doc_components() -> None:
    hits = {h.id: h for h in convex({"sparse": SPARSE, "dense": DENSE})}
    assert hits["c"].components == {
        "sparse": {"score": 2.0, "rank": 3},
        "dense": {"score": None, "rank": None},
    }
    assert hits["d"].components["sparse"] == {"score": None, "rank": None}


def test_degenerate_and_empty_runs() -> None:
    # One doc per side: minmax maps it to 1 (its side's best), the other doc to 0.
    hits = convex({"s": [("x", 3.0)], "d": [("y", 0.2)]}, alpha=0.6)
    assert ids(hits) == ["x", "y"] and scores(hits) == pytest.approx({"x": 0.6, "y": 0.4})
    # zscore: no spread means no information; both 0, tie broken by id.
    hits = convex({"s": [("y", 3.0)], "d": [("x", 0.2)]}, normalization="zscore")
    assert ids(hits) == ["x", "y"] and scores(hits) == {"x": 0.0, "y": 0.0}
    assert ids(convex({"s": SPARSE, "d": []}, alpha=0.5)) == ["a", "b", "c"]
    assert rrf({"s": [], "d": []}) == [] and convex({"s": [], "d": []}) == []


def test_duplicates_keep_first_and_single_sorts() -> None:
    run = [("x", 1.0), ("y", 2.0), ("x", 5.0)]
    hits = single("sparse", run)
    assert ids(hits) == ["y", "x"]
    assert hits[1].components == {"sparse": {"score": 1.0, "rank": 1}}
    assert ids(single("s", [("b", 1.0), ("a", 1.0)])) == ["a", "b"]


@pytest.mark.parametrize(
    "call",
    [
        lambda: rrf({"a": A}, k=-1),
        lambda: rrf({"a": A}, weights={"zzz": 1.0}),
        lambda: rrf({"a": A}, weights={"a": -1.0}),
        lambda: convex({"s": SPARSE, "d": DENSE}, alpha=1.5),
        lambda: convex({"s": SPARSE, "d": DENSE}, normalization="l2"),  # type: ignore[arg-type]
        lambda: convex({"s": SPARSE, "d": DENSE}, alpha=0.5, weights={"s": 1.0}),
        lambda: convex({"s": SPARSE, "d": DENSE, "e": A}, alpha=0.5),
        lambda: convex({"s": [("a", float("nan"))], "d": DENSE}),
    ],
)
def test_bad_input(call) -> None:
    with pytest.raises(ValueError):
        call()


runs_strategy = st.dictionaries(
    st.sampled_from(["s", "d", "b"]),
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(-5, 5, allow_nan=False)), max_size=8),
    min_size=1,
    max_size=3,
)


@given(runs_strategy)
def test_fused_lists_are_the_union_in_canonical_order(runs) -> None:
    union = {d for run in runs.values() for d, _ in run}
    fused = [rrf(runs)]
    if len(runs) == 2:
        fused += [convex(runs), convex(runs, normalization="zscore")]
    for hits in fused:
        assert sorted(ids(hits)) == sorted(union)
        keys = [(-h.score, h.id) for h in hits]
        assert keys == sorted(keys)
        assert all(set(h.components) == set(runs) for h in hits)


def test_hybrid_weights_share_out_the_bm25_side() -> None:
    # convex: BM25 takes b, sparse and dense split 1 - b by alpha
    assert hybrid_weights("convex", 0.3, 0.4) == pytest.approx(
        {"sparse": 0.6 * 0.3, "dense": 0.6 * 0.7, "bm25": 0.4}
    )
    # rrf: sparse and dense keep 1 at b = 0; b = 1/3 weighs all three equally
    assert hybrid_weights("rrf", 0.9, 0.0) == {"sparse": 1.0, "dense": 1.0, "bm25": 0.0}
    for fusion in ("rrf", "convex"):
        w = list(hybrid_weights(fusion, 0.5, 1 / 3).values())
        assert w == pytest.approx([w[0]] * 3)
    for bad in (-0.1, 1.1, True, "0.2"):
        with pytest.raises(ValueError, match="bm25_weight must lie in"):
            hybrid_weights("convex", 0.5, bad)  # type: ignore[arg-type]


def test_fuser_with_bm25_weight_zero_is_the_two_way_hybrid() -> None:
    two = {"sparse": SPARSE, "dense": DENSE}
    for norm in ("minmax", "zscore"):
        fused = make_fuser("convex", 60, 0.3, norm, 0.0)(two)
        want = convex(two, alpha=0.3, normalization=norm)
        assert [(h.id, h.score) for h in fused] == [(h.id, h.score) for h in want]
    assert [(h.id, h.score) for h in make_fuser("rrf", 7, 0.3, "zscore", 0.0)(two)] == [
        (h.id, h.score) for h in rrf(two, k=7)
    ]
    # with a share, the BM25 run adds its candidates and its weight
    three = {**two, "bm25": [("e", 3.0), ("a", 1.0)]}
    fused = make_fuser("convex", 60, 0.5, "minmax", 0.5)(three)
    # minmax: sparse a=1 b=.5 c=0; dense b=1 d=.5 a=0; bm25 e=1 a=0 (others 0); weights .25 .25 .5
    assert scores(fused) == pytest.approx({"a": 0.25, "b": 0.375, "c": 0.0, "d": 0.125, "e": 0.5})
    assert ids(fused)[0] == "e"
