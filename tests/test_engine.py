"""Engine over a tiny corpus: modes, fusion over the union, explain, batching, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from sparseretr.eval.runner import run_retrieval
from sparseretr.eval.searcher import ModeSearcher
from sparseretr.index import CorruptIndexError, SparseIndex
from sparseretr.index.dense import DENSE_DIR, DenseIndex, DenseIndexError

import sparseretr.engine as engine_mod
from sparseretr.batch import build_from_corpus
from sparseretr.encoders import BM25Encoder, create_encoder, load_encoder
from sparseretr.engine import Engine, SearchResult
from sparseretr.fusion import DEFAULTS, convex, hybrid_weights, rrf

DOCS = [
    ("d0", "Cats", "The domestic cat is a small carnivorous mammal kept as a pet."),
    ("d1", "Kittens", "A kitten is a juvenile feline; young cats sleep most of the day."),
    ("d2", "Dogs", "The dog is a domesticated descendant of the wolf."),
    ("d3", "Stock market", "Share prices fell sharply as investors sold equities."),
    ("d4", "Bonds", "Government bonds rallied while interest rates dropped."),
    ("d5", "Volcanoes", "Lava erupts from a volcano when magma reaches the surface."),
    ("d6", "Baking", "Bread dough rises because yeast ferments the sugars in flour."),
    ("d7", "Football", "The striker scored twice in the final minutes of the match."),
]
ALL_MODES = ["sparse", "dense", "hybrid", "bm25"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """Index with dense/ (built by build_index's extras) and bm25/; one MiniLM load in all."""
    from sparseretr.dense import DenseEncoder

    root = tmp_path_factory.mktemp("engine")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in DOCS),
        encoding="utf-8",
    )
    encoder = DenseEncoder()
    seen_configs: list[dict] = []

    class Reuse:
        """Stands in for DenseEncoder in sparseretr.engine: the real model, loaded once."""

        def __new__(cls, model: str = "all-MiniLM-L6-v2", **kwargs):
            assert model == "all-MiniLM-L6-v2"
            return encoder

        @staticmethod
        def from_config(config: dict, **overrides):
            seen_configs.append(config)
            return encoder

    path = root / "index"
    with mock.patch.object(engine_mod, "DenseEncoder", Reuse):
        build_from_corpus(
            corpus,
            path,
            create_encoder("bm25"),
            dense_model="all-MiniLM-L6-v2",
            with_bm25=True,
            show_progress=False,
        )
        engine = Engine.open(path)
    assert seen_configs == [encoder.config()]  # the query encoder comes from dense.json
    yield engine, path
    engine.close()


@pytest.fixture
def engine(built) -> Engine:
    return built[0]


def test_layout_and_modes(built) -> None:
    engine, path = built
    seg = engine.snapshot.first.sparse.path
    assert (seg / DENSE_DIR / "dense.json").is_file()
    manifest = SparseIndex.open(seg, verify=True).manifest
    assert "dense/faiss.index" in manifest["files"]  # hashed with the rest by verify=True
    assert engine.modes == ALL_MODES and engine.default_mode == "hybrid"
    stats = engine.stats()
    assert stats["n_docs"] == len(DOCS) and stats["modes"] == ALL_MODES
    assert stats["dense"] == {"kind": "flat", "n": 8, "dim": 384, "model": "all-MiniLM-L6-v2"}
    json.dumps(stats)  # served as JSON by /stats
    first = engine.snapshot.first
    assert first.dense is not None and first.dense.n == len(DOCS)
    sparse_only = Engine.open(path, dense=False, bm25=False)
    assert sparse_only.modes == ["sparse"] and sparse_only.default_mode == "sparse"
    with pytest.raises(ValueError, match=r"'hybrid' is not available.*\['sparse'\]"):
        sparse_only.search(["cats"], mode="hybrid")
    sparse_only.close()


def test_bad_arguments(engine: Engine) -> None:
    with pytest.raises(ValueError, match=r"unknown search mode 'semantic'.*'bm25'"):
        engine.search(["cats"], mode="semantic")
    with pytest.raises(ValueError, match="unknown search mode"):
        ModeSearcher(engine, "nope")
    with pytest.raises(ValueError, match="fusion must be"):
        engine.search(["cats"], fusion="max")
    with pytest.raises(ValueError, match="alpha"):
        engine.search(["cats"], fusion="convex", alpha=2.0)
    with pytest.raises(ValueError, match="normalization"):
        engine.search(["cats"], fusion="convex", normalization="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        engine.search(["cats"], k=0)
    with pytest.raises(TypeError):
        engine.search("cats")  # type: ignore[arg-type]
    assert engine.search([]) == []


def test_single_modes_match_their_searchers(built) -> None:
    engine, path = built
    q = ["young cats sleeping"]
    (sparse,) = engine.search(q, k=5, mode="sparse")
    idx = SparseIndex.open(engine.snapshot.first.sparse.path)  # the segment, searched alone
    enc = load_encoder(idx.encoder_config, idx.encoder_dir)
    assert isinstance(enc, BM25Encoder)  # its queries take IDF from the index's statistics
    ids, scores = idx.search(
        enc.query_weights(enc.encode_queries(q), idx.doc_freqs(), idx.n_docs), 5
    )
    pairs = zip(ids[0], scores[0], strict=True)
    expected = [(idx.doc_id(int(i)), float(s)) for i, s in pairs if i >= 0]
    assert [(h.id, h.score) for h in sparse.hits] == expected
    assert all(set(h.components) == {"sparse"} for h in sparse.hits)
    assert sparse.hits[0].components["sparse"] == {"score": sparse.hits[0].score, "rank": 1}

    (dense,) = engine.search(q, k=3, mode="dense")
    assert dense.hits[0].id in {"d0", "d1"} and set(dense.hits[0].components) == {"dense"}
    assert dense.explain is None and set(dense.timing) == {"encode_ms", "search_ms", "fuse_ms"}

    (bm25,) = engine.search(q, k=3, mode="bm25", explain=True)
    assert bm25.hits[0].id == "d1" and set(bm25.hits[0].components) == {"bm25"}
    assert {m["token"] for m in bm25.explain["d1"]} >= {"cat", "young"}


def test_hybrid_fuses_the_union(engine: Engine) -> None:
    q = ["volcano"]  # one doc has the word; the dense side ranks every doc
    (sparse,) = engine.search(q, k=8, mode="sparse")
    (dense,) = engine.search(q, k=8, mode="dense")
    assert [h.id for h in sparse.hits] == ["d5"] and len(dense.hits) == 8
    runs = {
        "sparse": [(h.id, h.score) for h in sparse.hits],
        "dense": [(h.id, h.score) for h in dense.hits],
    }
    two_way = {"bm25_weight": 0.0}
    (hybrid,) = engine.search(
        q, k=4, mode="hybrid", candidates=8, fusion="rrf", rrf_k=60, **two_way
    )
    assert [(h.id, h.score) for h in hybrid.hits] == [(h.id, h.score) for h in rrf(runs, k=60)[:4]]
    assert hybrid.hits[0].id == "d5"
    assert hybrid.hits[0].components["sparse"]["rank"] == 1
    assert hybrid.hits[1].components["sparse"] == {"score": None, "rank": None}  # dense-only

    (cvx,) = engine.search(
        q, k=8, mode="hybrid", fusion="convex", alpha=0.3, normalization="zscore", candidates=8,
        **two_way,
    )  # fmt: skip
    want = convex(runs, alpha=0.3, normalization="zscore")
    assert [(h.id, h.score) for h in cvx.hits] == [(h.id, h.score) for h in want]


def test_hybrid_fuses_the_bm25_side_by_its_share(built) -> None:
    engine, path = built
    q = ["young cats sleeping"]
    runs = {
        side: [(h.id, h.score) for h in engine.search(q, k=8, mode=side)[0].hits]
        for side in ("sparse", "dense", "bm25")
    }
    for fusion in ("convex", "rrf"):
        opts = {"fusion": fusion, "alpha": 0.3, "rrf_k": 60, "candidates": 8}
        (three,) = engine.search(q, k=8, mode="hybrid", bm25_weight=0.4, **opts)
        weights = hybrid_weights(fusion, 0.3, 0.4)
        want = (
            convex(runs, weights=weights, normalization="zscore")
            if fusion == "convex"
            else rrf(runs, k=60, weights=weights)
        )
        assert [(h.id, h.score) for h in three.hits] == [(h.id, h.score) for h in want]
        assert set(three.hits[0].components) == {"sparse", "dense", "bm25"}
        (two,) = engine.search(q, k=8, mode="hybrid", bm25_weight=0.0, **opts)
        assert set(two.hits[0].components) == {"sparse", "dense"}
        (default,) = engine.search(q, k=8, mode="hybrid", **opts)  # the side is open here
        (named,) = engine.search(q, k=8, mode="hybrid", bm25_weight=DEFAULTS["bm25_weight"], **opts)
        assert [(h.id, h.score) for h in default.hits] == [(h.id, h.score) for h in named.hits]
    with pytest.raises(ValueError, match="bm25_weight must lie in"):
        engine.search(q, mode="hybrid", bm25_weight=1.5)
    no_bm25 = Engine.open(path, bm25=False)
    try:
        assert no_bm25.hybrid_bm25_weight(None) == 0.0  # the default needs the side
        (res,) = no_bm25.search(q, k=8, mode="hybrid")
        assert set(res.hits[0].components) == {"sparse", "dense"}
        with pytest.raises(ValueError, match="bm25_weight 0.3 needs the BM25 side"):
            no_bm25.search(q, mode="hybrid", bm25_weight=0.3)
    finally:
        no_bm25.close()


def test_hybrid_explain_covers_every_hit(engine: Engine) -> None:
    (res,) = engine.search(["lava volcano"], k=3, explain=True)
    assert isinstance(res, SearchResult) and list(res.explain) == [h.id for h in res.hits]
    top = {m["token"]: m for m in res.explain["d5"]}
    assert res.hits[0].id == "d5" and set(top) == {"lava", "volcano"}
    m = top["lava"]
    assert m["contribution"] == pytest.approx(m["query_weight"] * m["doc_weight"])
    assert res.explain[res.hits[1].id] == []  # a dense-only hit shares no token with the query
    assert "explain_ms" in res.timing


def test_batch_encodes_once_per_side(engine: Engine) -> None:
    queries = ["cats", "interest rates", "bread yeast"]
    enc, sp = engine.dense_encoder, engine.sparse_encoder
    with (
        mock.patch.object(enc, "encode", wraps=enc.encode) as dense_calls,
        mock.patch.object(sp, "encode_queries", wraps=sp.encode_queries) as sparse_calls,
    ):
        batch = engine.search(queries, k=2)
    assert dense_calls.call_count == 1 and sparse_calls.call_count == 1
    one_by_one = [engine.search([q], k=2)[0] for q in queries]
    assert [[h.id for h in r.hits] for r in batch] == [[h.id for h in r.hits] for r in one_by_one]
    assert [r.hits[0].id for r in batch] == ["d0", "d4", "d6"]


def test_searcher_for_eval_runner(engine: Engine) -> None:
    searcher = ModeSearcher(engine, "hybrid", fusion="convex", alpha=0.7)
    texts = ["cats", "stock prices"]
    got = searcher.search(texts, 3)
    want = engine.search(texts, k=3, mode="hybrid", fusion="convex", alpha=0.7)
    assert got == [[(h.id, h.score) for h in r.hits] for r in want]
    assert set(searcher.last_timing) == {"encode_s", "search_s", "fuse_s"}
    run = run_retrieval(searcher, {"q1": "cats", "q2": "stock prices"}, k=3, warmup=0)
    assert list(run.results["q2"])[0] == "d3" and "encode_s" in run.breakdown


def test_mismatched_dense_side_is_refused(built, tmp_path: Path) -> None:
    engine, path = built
    copy = tmp_path / "copy"
    shutil.copytree(engine.snapshot.first.sparse.path, copy)
    shutil.rmtree(copy / DENSE_DIR)
    DenseIndex.writer(np.ones((3, engine.dense_encoder.dim), np.float32), {})(copy / DENSE_DIR)
    with pytest.raises(CorruptIndexError, match="replaced"):  # the manifest lists dense/ files
        Engine.open(copy)
    with pytest.raises(DenseIndexError, match="belongs to another build"):
        DenseIndex.open(copy / DENSE_DIR, n_docs=len(DOCS))


def test_sparse_cost_matches_the_stored_vectors(engine: Engine) -> None:
    """nnz and FLOPS from the postings equal the same figures counted on decoded doc vectors."""
    from sparseretr.eval.cost import sparse_cost

    texts = ["cats and kittens", "interest rates", "volcano lava magma", "zzzz"]
    q = engine.encode("sparse", texts)
    cost = sparse_cost(engine, q)
    seg = engine.snapshot.first
    docs = seg.sparse.doc_vectors(np.arange(seg.n_docs))
    p_d = np.bincount(docs.indices, minlength=docs.vocab_size) / seg.n_docs
    p_q = np.bincount(q.indices, minlength=q.vocab_size) / len(texts)
    assert cost["nnz_per_doc"] == pytest.approx(docs.nnz / seg.n_docs)
    assert cost["nnz_per_query"] == pytest.approx(q.nnz / len(texts))
    assert cost["flops"] == pytest.approx(float(p_q @ p_d)) and cost["flops"] > 0


def test_device_reaches_the_sparse_encoder(tmp_path: Path, monkeypatch) -> None:
    """SPARSERETR_DEVICE (Engine.open's device) loads the sparse model there too, not only the
    dense one; BM25 has no model and gets none."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in DOCS))
    path = tmp_path / "if"
    build_from_corpus(
        corpus, path, create_encoder("inference-free", max_length=32), with_bm25=True,
        show_progress=False,
    )  # fmt: skip
    seen = []
    real = engine_mod.load_encoder

    def spy(config, state_dir=None, **overrides):
        seen.append((config["kind"], overrides.get("device")))
        return real(config, state_dir, **overrides)

    monkeypatch.setattr(engine_mod, "load_encoder", spy)
    eng = Engine.open(path, dense=False, bm25=True, device="cpu")
    try:
        assert seen == [("inference-free", "cpu"), ("bm25", None)]
        assert str(eng.sparse_encoder.doc_encoder.device) == "cpu"
    finally:
        eng.close()


def test_pruning_knobs(engine: Engine) -> None:
    q = ["young cats sleeping", "dogs"]
    exact = engine.search(q, k=3, mode="bm25")
    same = engine.search(q, k=3, mode="bm25", prune_alpha=1.0, term_fraction=1.0)
    assert [[h.id for h in r.hits] for r in same] == [[h.id for h in r.hits] for r in exact]
    approx = engine.search(q, k=3, mode="bm25", prune_alpha=0.5, term_fraction=0.5)
    assert all(len(r.hits) <= 3 for r in approx)
    for bad in ({"prune_alpha": 0.0}, {"term_fraction": 1.5}, {"prune_alpha": True}):
        with pytest.raises(ValueError, match="must lie in"):
            engine.search(q, k=3, mode="bm25", **bad)


def test_tune_fusion_grid_scores_what_the_engine_serves(built, tmp_path: Path) -> None:
    """Each grid point of `eval tune-fusion` is the engine's own hybrid at those settings."""
    from sparseretr.eval.tune_fusion import BM25_WEIGHTS, tune_fusion

    from sparseretr.metrics import evaluate

    engine, path = built
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in DOCS)
    )
    queries = {"q1": "sleepy young cats", "q2": "interest rates and bonds", "q3": "wolf pets"}
    qrels = {"q1": {"d1": 2, "d0": 1}, "q2": {"d4": 1}, "q3": {"d2": 1, "d0": 1}}
    (beir / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in queries.items())
    )
    (beir / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{s}\n" for q, ds in qrels.items() for d, s in ds.items())
    )
    with pytest.raises(ValueError, match="test split is for reporting"):
        tune_fusion(str(beir), str(path), split="test")
    report = tune_fusion(str(beir), str(path), split="train", candidates=8)
    assert report["bm25_side"] and report["n_queries"] == 3
    assert {g["bm25_weight"] for g in report["grid"]} == set(BM25_WEIGHTS)
    for point in (report["grid"][0], report["grid"][-1], report["best"]["convex"]):
        opts = {k: v for k, v in point.items() if k != "ndcg@10"}
        results = engine.search(list(queries.values()), k=10, mode="hybrid", candidates=8, **opts)
        run = {q: {h.id: h.score for h in r.hits} for q, r in zip(queries, results, strict=True)}
        assert point["ndcg@10"] == pytest.approx(evaluate(qrels, run, k_values=(10,))["NDCG@10"])
