"""Training: config files, teacher cache, differentiable forward, tiny runs, resume, export.

Everything runs on splade-tiny with 32-token documents and a dozen documents: seconds, not
minutes. The SciFact smoke run is a manual step (see configs/), not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseretr.encoders import InferenceFreeEncoder, SpladeEncoder
from sparseretr.training import TrainConfig, Trainer, load_config
from sparseretr.training.config import TeacherConfig, TeacherMember
from sparseretr.training.data import load_training_data
from sparseretr.training.forward import pooled_logits
from sparseretr.training.teachers import TeacherCache, build_teacher_cache, load_or_build

DOCS = [
    ("d1", "Vitamin D and cancer", "Vitamin D deficiency raises cancer risk in adults."),
    ("d2", "Protein folding", "Chaperones help proteins fold inside the cell."),
    ("d3", "Sleep", "Sleep deprivation impairs memory consolidation."),
    ("d4", "Cancer screening", "Screening programs reduce cancer mortality."),
    ("d5", "Exercise", "Regular exercise lowers blood pressure and heart disease risk."),
    ("d6", "Insulin", "Insulin resistance precedes type 2 diabetes."),
    ("d7", "Antibiotics", "Overuse of antibiotics drives bacterial resistance."),
    ("d8", "Smoking", "Smoking causes lung cancer and heart disease."),
    ("d9", "Coffee", "Coffee consumption is linked to lower liver disease risk."),
    ("d10", "Memory", "Memory consolidation happens during deep sleep."),
    ("d11", "Gut bacteria", "Gut microbiota influence the immune system."),
    ("d12", "Salt", "High salt intake raises blood pressure."),
]
QUERIES = [
    ("q1", "vitamin D deficiency cancer"),
    ("q2", "how do proteins fold"),
    ("q3", "exercise and blood pressure"),
    ("q4", "insulin resistance diabetes"),
    ("q5", "antibiotic resistance bacteria"),
    ("q6", "smoking lung cancer"),
    ("q7", "sleep and memory"),
    ("q8", "salt and blood pressure"),
]
QRELS = [
    ("q1", "d1"),
    ("q2", "d2"),
    ("q3", "d5"),
    ("q4", "d6"),
    ("q5", "d7"),
    ("q6", "d8"),
    ("q7", "d10"),
    ("q7", "d3"),
    ("q8", "d12"),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core box: one thread is ~5x faster, and CPU reductions are
    then bitwise repeatable (the resume test compares states exactly)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_beir")
    rows = [json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in DOCS]
    (root / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    rows = [json.dumps({"_id": i, "text": x}) for i, x in QUERIES]
    (root / "queries.jsonl").write_text("\n".join(rows) + "\n")
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in QRELS]
    (root / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")
    return root


def make_config(beir: Path, out: Path, **sections) -> TrainConfig:
    raw = {
        "model": "splade-tiny",
        "encoder": "inference-free",
        "output_dir": str(out),
        "data": {"path": str(beir), "max_length": 32, "query_max_length": 16, "heldout_queries": 2},
        "optim": {
            "epochs": 2,
            "batch_size": 3,
            "negatives": 1,
            "lr": 1e-3,
            "warmup_steps": 0,
            "seed": 7,
            # fp32 everywhere: "auto" picks bf16 on CPUs with AVX512-BF16, and the tests compare
            # the trained encoder's vectors with fp32 reloads of the exported model.
            "dtype": "float32",
        },
        "loss": {"kl": 1.0, "flops_doc": 0.0, "flops_warmup_steps": 0},
        "teachers": {
            "members": [{"kind": "bm25"}],
            "miners": ["bm25"],
            "depth": 5,
            "cache": str(beir / "teachers.npz"),
        },
        "eval": {"pool": "full", "at_start": False, "every_epochs": 0},
        "checkpoint_every": 0,
        "log_every": 1,
        "sentence_transformers_layout": False,
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            raw[name] = {**raw.get(name, {}), **values}
        else:
            raw[name] = values
    return TrainConfig.from_dict(raw)


# -- config --------------------------------------------------------------------------------------
def test_config_yaml_toml_and_errors(tmp_path: Path):
    (tmp_path / "c.yaml").write_text(
        "encoder: siamese\nloss:\n  flops_doc: 1e-3\n  kl: 1\noptim:\n  max_minutes: 4\n"
    )
    cfg = load_config(tmp_path / "c.yaml", ["optim.lr=2e-4", "teachers.depth=7"])
    assert cfg.encoder == "siamese" and cfg.loss.flops_doc == pytest.approx(1e-3)
    assert cfg.optim.lr == pytest.approx(2e-4) and cfg.teachers.depth == 7
    assert cfg.optim.max_minutes == 4.0 and isinstance(cfg.loss.kl, float)
    (tmp_path / "c.toml").write_text(
        'encoder = "inference-free"\n[[teachers.members]]\nkind = "bm25"\nweight = 2.0\n'
    )
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.teachers.members == [TeacherMember("bm25", 2.0)]
    (tmp_path / "bad.yaml").write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="encoder"):
        TrainConfig.from_dict({"encoder": "colbert"})


def test_example_configs_parse():
    root = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.toml")]):
        load_config(path)


# -- data and teachers ---------------------------------------------------------------------------
def test_teacher_cache_mines_scores_and_reloads(beir: Path, tmp_path: Path):
    cfg = make_config(beir, tmp_path)
    data = load_training_data(cfg.data, seed=7)
    assert data.train.size == 6 and data.heldout.size == 2
    assert not set(data.train) & set(data.heldout)
    tc = TeacherConfig(members=[TeacherMember("bm25", 1.0)], miners=["bm25"], depth=4)
    path = tmp_path / "t.npz"
    cache = build_teacher_cache(data, tc, path)
    for q, pos in enumerate(data.positives):
        negs = cache.negatives(q, 4)
        assert negs.size and not np.isin(negs, pos).any()
        assert np.array_equal(cache.cands[q][: pos.size], pos)
        target = cache.ensemble(q, {"bm25": 1.0}, scale=10.0)
        assert target.max() == pytest.approx(10.0) and target.min() == pytest.approx(0.0)
    q7 = data.query_ids.index("q1")
    lookup = cache.target_fn({"bm25": 1.0}, 10.0)
    d1 = data.doc_ids.index("d1")
    assert lookup(q7, np.array([d1]))[0] == pytest.approx(10.0)  # the obvious BM25 winner
    again = load_or_build(data, tc, path)
    assert again.meta == cache.meta
    assert all(np.array_equal(a, b) for a, b in zip(again.cands, cache.cands, strict=True))
    assert isinstance(TeacherCache.load(path), TeacherCache)


# -- the differentiable forward ------------------------------------------------------------------
def test_sparse_gradient_path_equals_autograd_and_encoder():
    enc = SpladeEncoder(max_length=32)
    ids = enc.token_ids(["Vitamin D deficiency raises cancer risk.", "Proteins fold."], 32, True)
    fast = pooled_logits(enc, ids)
    weights = torch.randn_like(fast)
    (fast * weights).sum().backward()
    grads = [p.grad.clone() for p in enc.model.parameters()]
    enc.model.zero_grad()
    ref = pooled_logits(enc, ids, exact_grad_path=True)
    (ref * weights).sum().backward()
    assert torch.allclose(fast, ref, atol=1e-4)
    for g, r in zip(grads, [p.grad for p in enc.model.parameters()], strict=True):
        assert torch.allclose(g, r, atol=1e-4, rtol=1e-4)
    # Same representation as inference (the model is in eval mode: no dropout).
    assert torch.allclose(torch.log1p(fast.detach()), enc.forward(ids), atol=1e-5)


# -- tiny runs -----------------------------------------------------------------------------------
def _ranking_loss(tr: Trainer) -> float:
    tr.model.eval()
    with torch.no_grad():
        losses = [tr.losses(tr.sampler.batch(0, i), 0)[1]["contrastive"] for i in range(2)]
    tr.model.train()
    return float(np.mean(losses))


def test_tiny_run_loss_falls_and_flops_sparsifies(beir: Path, tmp_path: Path):
    plain = Trainer(make_config(beir, tmp_path / "l0", optim={"epochs": 4}), show_progress=False)
    before = _ranking_loss(plain)
    report = plain.train()
    assert _ranking_loss(plain) < before
    assert report["steps"] == 8 and report["stopped"] == "completed"
    sparse = Trainer(
        make_config(beir, tmp_path / "l1", optim={"epochs": 4}, loss={"flops_doc": 1.0}),
        show_progress=False,
    )
    sparse_report = sparse.train()
    nnz_plain = report["eval"][-1]["nnz_per_doc"]
    nnz_sparse = sparse_report["eval"][-1]["nnz_per_doc"]
    assert nnz_sparse < 0.7 * nnz_plain
    lines = (tmp_path / "l1" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x) for x in lines if '"step"' in x and '"event": "step"' in x]
    assert {"loss", "flops_d", "nnz_d", "kl", "contrastive", "lr"} <= set(steps[-1])


def test_resume_gives_identical_state(beir: Path, tmp_path: Path):
    """Interrupted at step 2 and resumed == run straight to step 4 (dropout RNG included)."""
    straight = Trainer(make_config(beir, tmp_path / "a"), show_progress=False)
    straight.train()
    first = Trainer(make_config(beir, tmp_path / "b"), show_progress=False)
    first.train(stop_at_step=2)
    assert first.step == 2 and first.latest_checkpoint() is not None
    resumed = Trainer(make_config(beir, tmp_path / "b"), show_progress=False)
    assert resumed.step == 2
    resumed.train()
    assert resumed.step == straight.step == 4
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["exp_avg_sq"], sb["state"][k]["exp_avg_sq"])
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


def test_inference_free_export_loads_everywhere(beir: Path, tmp_path: Path):
    cfg = make_config(
        beir,
        tmp_path / "run",
        optim={"max_steps": 2},
        loss={"learn_idf": True},
        eval={"every_steps": 1},
        sentence_transformers_layout=True,
    )
    tr = Trainer(cfg, show_progress=False)
    report = tr.train()
    assert [e["label"] for e in report["eval"]] == ["step 1", "final"]
    folder = Path(report["model_dir"])
    meta = json.loads((folder / "sparseretr_config.json").read_text())
    assert meta["encoder"] == "inference-free" and meta["sentence_transformers_layout"]
    assert (folder / "idf.json").is_file() and (folder / "modules.json").is_file()
    ours = InferenceFreeEncoder(str(folder), max_length=32)
    assert ours.idf_source == "model"
    np.testing.assert_allclose(ours.idf, tr.current_idf(), atol=1e-5)  # the learned IDF
    texts = [x for _, _, x in DOCS[:3]]
    docs = ours.encode_documents(texts).to_scipy().toarray()
    tr.model.eval()
    np.testing.assert_allclose(
        docs, tr.encoder.encode_documents(texts).to_scipy().toarray(), atol=1e-5
    )
    from sentence_transformers import SparseEncoder

    st = SparseEncoder(str(folder), device="cpu")
    st_docs = st.encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(st_docs, docs, atol=1e-4)
    st_q = st.encode_query(["vitamin D cancer"], convert_to_tensor=True).to_dense().numpy()
    our_q = ours.encode_queries(["vitamin D cancer"]).to_scipy().toarray()
    np.testing.assert_allclose(st_q, our_q, atol=1e-5)


def test_lexical_prior_is_scored_not_regularized_and_exported(beir: Path, tmp_path: Path):
    """The student's scores include the fixed prior (the index will hold it); FLOPS and the
    gradient see the model's weights only; the exported folder carries the prior."""
    plain = Trainer(make_config(beir, tmp_path / "plain", lexical_weight=0), show_progress=False)
    cfg = make_config(beir, tmp_path / "lex", lexical_weight=2.0, optim={"max_steps": 1})
    lex = Trainer(cfg, show_progress=False)
    assert plain.encoder.lexical is None and lex.encoder.lexical.weight == 2.0
    batch = lex.sampler.batch(0, 0)
    texts = [lex.data.doc_texts[d] for d in batch.docs.reshape(-1)]
    prior = lex.encoder.lexical_vectors(texts).to_scipy().toarray()
    np.testing.assert_allclose(lex.prior_rows(batch.docs.reshape(-1)).numpy(), prior)
    assert plain.prior_rows(batch.docs.reshape(-1)) == 0.0
    with torch.no_grad():
        _, with_prior = lex.losses(batch, 0)
        _, without = plain.losses(batch, 0)
    assert with_prior["flops_d"] == pytest.approx(without["flops_d"])  # same model weights
    assert with_prior["nnz_d"] == without["nnz_d"]
    assert with_prior["kl"] != pytest.approx(without["kl"])  # the scores differ
    report = lex.train()
    folder = Path(report["model_dir"])
    meta = json.loads((folder / "sparseretr_config.json").read_text())
    assert meta["lexical"] == lex.encoder.lexical.to_dict()
    loaded = InferenceFreeEncoder(str(folder), max_length=32)
    lex.model.eval()
    np.testing.assert_allclose(
        loaded.encode_documents(texts[:3]).to_scipy().toarray(),
        lex.encoder.encode_documents(texts[:3]).to_scipy().toarray(),
        atol=1e-5,
    )


def test_calibrated_scale_matches_the_teacher_spread_and_survives_resume(
    beir: Path, tmp_path: Path
):
    """calibrate_scale: student scores x scale spread within a group as the teacher's do on
    the first batches; a resumed run keeps the scale it was trained with, not a new one."""
    cfg = make_config(
        beir, tmp_path / "cal", lexical_weight=2.0, loss={"calibrate_scale": True},
        optim={"max_steps": 2}, checkpoint_every=1,
    )  # fmt: skip
    tr = Trainer(cfg, show_progress=False)
    tr.model.eval()
    student, teacher = [], []
    with torch.no_grad():
        for i in range(min(8, len(tr.sampler))):
            batch = tr.sampler.batch(0, i)
            _, q, d = tr.student(batch)
            scores = (q @ d.T).reshape(len(batch.queries), -1)
            g = batch.docs.shape[1]
            own = torch.stack([scores[j, j * g : (j + 1) * g] for j in range(len(batch.queries))])
            student.append(float((own * tr.score_scale).std(1).mean()))
            teacher.append(float(np.std(batch.teacher, axis=1).mean()))
    assert tr.score_scale != 1.0
    assert np.mean(student) == pytest.approx(np.mean(teacher), rel=1e-4)
    tr.train(stop_at_step=1)
    tr.score_scale = 0.123  # what the checkpoint written next will hold
    tr.save_checkpoint()
    resumed = Trainer(cfg, show_progress=False)
    assert resumed.step == 1 and resumed.score_scale == 0.123


def test_final_fit_without_heldout_trains_on_all_queries(beir: Path, tmp_path: Path):
    """heldout 0: every train query is trained on, no evaluation is reported, the model exports."""
    cfg = make_config(
        beir,
        tmp_path / "final",
        data={"heldout_queries": 0},
        optim={"max_steps": 2},
        eval={"every_steps": 1},
    )
    report = Trainer(cfg, show_progress=False).train()
    assert report["heldout_queries"] == 0 and report["train_queries"] == len(QUERIES)
    assert report["eval"] == [] and report["steps"] == 2
    meta = json.loads((Path(report["model_dir"]) / "sparseretr_config.json").read_text())
    assert meta["encoder"] == "inference-free"


def test_siamese_run_via_cli_exports_splade(beir: Path, tmp_path: Path):
    from sparseretr.cli import main

    cfg = tmp_path / "siamese.yaml"
    raw = make_config(
        beir, tmp_path / "siamese", optim={"max_steps": 2, "freeze_vocab": True}
    ).to_dict()
    raw.update(encoder="siamese", sentence_transformers_layout=True)
    raw["loss"].update(flops_query=1e-3, doc_nnz_threshold=5)
    import yaml

    cfg.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(cfg), "--quiet", "--no-resume"]) == 0
    folder = tmp_path / "siamese" / "model"
    report = json.loads((tmp_path / "siamese" / "training_report.json").read_text())
    assert report["steps"] == 2 and report["eval"][-1]["nnz_per_query"] > 0
    assert json.loads((folder / "sparseretr_config.json").read_text())["encoder"] == "splade"
    enc = SpladeEncoder(str(folder), max_length=32)
    base = SpladeEncoder(max_length=32)
    emb = enc.model.get_input_embeddings().weight
    assert torch.equal(emb, base.model.get_input_embeddings().weight)  # freeze_vocab
    assert not torch.equal(
        enc.model.bert.encoder.layer[0].output.dense.weight,
        base.model.bert.encoder.layer[0].output.dense.weight,
    )
    vec = enc.encode_queries(["vitamin D cancer"]).to_scipy().toarray()
    from sentence_transformers import SparseEncoder

    st = SparseEncoder(str(folder), device="cpu")
    st_vec = st.encode_query(["vitamin D cancer"], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(st_vec, vec, atol=1e-4)


def test_select_best_exports_the_best_evaluated_state(beir: Path, tmp_path: Path, monkeypatch):
    """Scripted held-out scores 0.2, 0.9, 0.1: the exported model is the one of the second
    evaluation (step 2), not the last one, and the report names it."""
    cfg = make_config(
        beir,
        tmp_path / "best",
        optim={"max_steps": 3},
        eval={"every_steps": 1, "at_start": False, "select_best": True},
    )
    tr = Trainer(cfg, show_progress=False)
    scripted = iter([0.2, 0.9, 0.1])
    states = {}

    def metrics(qrels, results, k_values):  # the held-out metric, scripted
        states[tr.step] = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
        return {"NDCG@10": next(scripted), "Recall@100": 1.0}

    monkeypatch.setattr("sparseretr.metrics.evaluate", metrics)
    report = tr.train()
    assert [e["step"] for e in report["eval"]] == [1, 2, 3]
    assert report["selected"]["step"] == 2
    exported = SpladeEncoder(str(Path(report["model_dir"])), max_length=32).model.state_dict()
    key = next(k for k in states[2] if "word_embeddings" in k)
    assert not torch.equal(states[2][key], states[3][key])  # training moved the weights
    for k, v in states[2].items():
        assert torch.equal(exported[k].cpu(), v.cpu()), k
    meta = json.loads((Path(report["model_dir"]) / "sparseretr_config.json").read_text())
    assert meta["trained_steps"] == 2


def test_candidate_groups_leave_the_positives_out(beir: Path):
    """groups=candidates (pseudo-queries): every group is negatives + 1 mined candidates, never
    the query's positive, deterministic per (seed, epoch, batch)."""
    from sparseretr.training.data import BatchSampler

    cfg = make_config(beir, beir / "unused")
    data = load_training_data(cfg.data, 7)
    pools = {q: np.array([d for d in range(12) if d not in data.positives[q]]) for q in range(8)}
    make = lambda: BatchSampler(  # noqa: E731
        data, batch_size=3, negatives=4, seed=1, negatives_for=pools.__getitem__,
        groups="candidates",
    )  # fmt: skip
    a, b = make().batch(0, 0), make().batch(0, 0)
    assert a.docs.shape == (3, 5) and np.array_equal(a.docs, b.docs)
    for q, group in zip(a.queries, a.docs, strict=True):
        assert len(set(group.tolist())) == 5 and not np.isin(group, data.positives[q]).any()
    with pytest.raises(ValueError, match="groups=candidates"):
        make_config(beir, beir / "x", optim={"groups": "candidates"}, loss={"contrastive": 1.0})
