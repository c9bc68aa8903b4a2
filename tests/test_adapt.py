"""`sparseretr adapt`: pseudo-queries, corpus-only reading, teacher-agreement selection, budget.

The end-to-end test runs the real command on a folder that holds nothing but corpus.jsonl,
with an audit hook recording every file the process opens under that folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseretr.adapt import generate, read_corpus, sentences
from sparseretr.adapt.job import AdaptOptions, default_config, training_data
from sparseretr.adapt.pseudo_queries import edge_idf, span, word_idf
from sparseretr.cli import main
from sparseretr.corpus import CorpusError

TOPICS = [
    ("Vitamin D and cancer", "Vitamin D deficiency raises cancer risk in adults. Trials differ."),
    ("Protein folding", "Chaperones help proteins fold inside the crowded cell. Misfolding harms."),
    ("Sleep", "Sleep deprivation impairs memory consolidation in young adults. It also slows."),
    ("Cancer screening", "Screening programs reduce cancer mortality in older women and men."),
    ("Exercise", "Regular exercise lowers blood pressure and heart disease risk in adults."),
    ("Insulin", "Insulin resistance precedes type 2 diabetes by many years in most patients."),
    ("Antibiotics", "Overuse of antibiotics drives bacterial resistance in hospitals worldwide."),
    ("Smoking", "Smoking causes lung cancer and heart disease in long-term smokers."),
    ("Coffee", "Coffee consumption is linked to lower liver disease risk in cohort studies."),
    ("Memory", "Memory consolidation happens during deep sleep in rodents and humans."),
    ("Gut bacteria", "Gut microbiota influence the immune system of newborn infants strongly."),
    ("Salt", "High salt intake raises blood pressure in salt-sensitive people over time."),
]


def write_corpus(folder: Path, n: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        title, text = TOPICS[i % len(TOPICS)]
        rows.append(json.dumps({"_id": f"d{i}", "title": f"{title} {i}", "text": text}))
    (folder / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    return folder


# -- pseudo-queries ---------------------------------------------------------------------------
def test_sentences_keep_query_sized_ones() -> None:
    text = "Short one. Vitamin D deficiency raises cancer risk in adults. E.g. this is it. " + (
        "word " * 50
    )
    got = sentences(text)
    assert got == ["Vitamin D deficiency raises cancer risk in adults."]


def test_mix_takes_turns_between_kinds_one_per_document() -> None:
    titles = [f"Title number {i} about hepatotoxicity" for i in range(30)]
    texts = [f"Sentence number {i} is long enough to count here." for i in range(30)]
    qs = generate(titles, texts, kind="title+sentence+span", n_queries=12, seed=3)
    assert len(qs) == 12 and len({q.doc for q in qs}) == 12
    assert [q.kind for q in qs] == ["title", "sentence", "span"] * 4
    for q in qs:
        source = titles[q.doc] if q.kind != "sentence" else texts[q.doc]
        assert q.text in source
    only_sent = generate(titles, texts, kind="sentence", n_queries=5, seed=3)
    assert all(q.kind == "sentence" and q.text == texts[q.doc] for q in only_sent)
    mix = generate(titles, texts, kind="mix", n_queries=6, seed=3)
    assert [q.kind for q in mix] == ["title", "sentence"] * 3
    # a corpus without titles still gives queries: sentences, and spans cut from them
    no_titles = generate([""] * 30, texts, kind="title+sentence+span", n_queries=4)
    assert [q.kind for q in no_titles] == ["sentence", "span"] * 2
    assert all(q.text in texts[q.doc] for q in no_titles)


def test_span_keeps_the_rarest_words_without_common_ones_at_its_ends() -> None:
    # "anal" and "fissure" are in one document, "management" in two, the rest in all three
    titles = [
        "Management of anal fissure in the clinic",
        "Management in the clinic of",
        "of the clinic in",
    ]
    idf = word_idf(titles, [""] * 3)
    common = edge_idf(idf)  # three documents: a word in two of them is common
    assert span(titles[0], idf, 3, common) == "anal fissure"  # not "of anal fissure"
    assert span(titles[0], idf, 2, common) == "anal fissure"
    assert span(titles[0], idf, 9, common) == "anal fissure"  # the whole title, ends trimmed
    assert span("Anal.", idf, 3, common) is None  # one word is no span
    assert span("the of", idf, 2, common) is None  # only common words
    qs = generate(titles, ["", "", ""], kind="span", n_queries=3, min_words=3)
    assert [q.text for q in qs] == ["anal fissure"]  # the other titles hold only common words


def test_read_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="without corpus.jsonl"):
        read_corpus(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(ValueError, match="repeats document ids"):
        read_corpus(tmp_path)


def test_training_data_holds_out_pseudo_queries() -> None:
    corpus = read_corpus_from_topics()
    qs = generate(corpus.titles, corpus.bodies, n_queries=12, seed=0)
    data = training_data(corpus, qs, heldout=3, seed=0)
    assert data.heldout.size == 3 and data.train.size == 9
    assert not set(data.heldout) & set(data.train)
    assert [int(p[0]) for p in data.positives] == [q.doc for q in qs]


def read_corpus_from_topics():
    from sparseretr.adapt.job import Corpus

    return Corpus(
        [f"d{i}" for i in range(len(TOPICS))], [t for t, _ in TOPICS], [x for _, x in TOPICS]
    )


# -- the command, end to end, on a corpus-only folder -------------------------------------------
@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    data = write_corpus(tmp_path_factory.mktemp("corpus_only"))
    assert sorted(p.name for p in data.iterdir()) == ["corpus.jsonl"]
    out = tmp_path_factory.mktemp("adapt") / "run"
    seen: list[str] = []
    root = str(data.resolve())

    def hook(event: str, args: tuple) -> None:
        if event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
            path = str(args[0])
            if path.startswith(root) or path.startswith(str(data)):
                seen.append(path)

    active = True
    sys.addaudithook(lambda e, a: hook(e, a) if active else None)  # cannot be removed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    stderr = io.StringIO()  # progress bars (tqdm) write here
    try:
        with contextlib.redirect_stderr(stderr):
            code = main(
                [
                    "adapt", "--corpus", str(data), "--out", str(out), "--minutes", "5",
                    "--queries", "12", "--index", "--quiet",
                    "--set", "data.max_length=32", "--set", "optim.max_steps=3",
                    "--set", "optim.batch_size=4", "--set", "optim.negatives=3",
                    "--set", "optim.dtype=float32", "--set", "eval.evals=0",
                    "--set", "eval.every_steps=2", "--set", "teachers.depth=8",
                    "--set", "checkpoint_every=0",
                ]
            )  # fmt: skip
    finally:
        active = False
        torch.set_num_threads(threads)
    assert code == 0
    (out.parent / "stderr.txt").write_text(stderr.getvalue())
    return data, out, seen


def test_adapt_quiet_shows_no_progress_bar(adapted: tuple[Path, Path, list[str]]) -> None:
    """--quiet holds for the teachers' corpus pass too (dense and splade encodings)."""
    _, out, _ = adapted
    stderr = (out.parent / "stderr.txt").read_text()
    assert "%|" not in stderr and "Batches" not in stderr, stderr[-500:]  # any tqdm bar


def test_adapt_reads_only_the_corpus_file(adapted: tuple[Path, Path, list[str]]) -> None:
    data, _, seen = adapted
    assert seen, "the audit hook saw no access to the corpus folder at all"
    allowed = {str(data), str(data.resolve())}
    allowed |= {str(data / "corpus.jsonl"), str(data.resolve() / "corpus.jsonl")}
    assert set(seen) <= allowed, sorted(set(seen) - allowed)


def test_adapt_writes_a_model_an_index_and_a_report(adapted: tuple[Path, Path, list[str]]) -> None:
    from sparseretr.engine import Engine

    _, out, _ = adapted
    report = json.loads((out / "adapt_report.json").read_text())
    training = report["training"]
    # evaluated at the start, at step 2 and at the end; the selection is one of them
    assert [e["label"] for e in training["eval"]] == ["start", "step 2", "final"]
    assert training["selected"] in training["eval"]
    assert report["pseudo_queries"]["n"] == 24  # one per document, 24 documents
    assert set(report["pseudo_queries"]["kinds"]) == {"title", "sentence"}  # mix
    for f in ("idf.json", "modules.json", "sparseretr_config.json"):
        assert (out / "model" / f).is_file()
    meta = json.loads((out / "model" / "sparseretr_config.json").read_text())
    assert meta["encoder"] == "inference-free" and meta["heldout_target"] == "teacher"
    # the lexical prior the student was trained on top of travels with the model and the index
    assert meta["lexical"]["weight"] == 2.0 and meta["lexical"]["avgdl"] > 0
    manifest = json.loads(next((out / "index").rglob("seg-*/manifest.json")).read_text())
    assert manifest["encoder_config"]["lexical"] == meta["lexical"], manifest["encoder_config"]
    engine = Engine.open(out / "index", dense=True, bm25=True)
    try:
        for mode in ("sparse", "dense", "bm25", "hybrid"):
            (res,) = engine.search(["salt and blood pressure"], k=3, mode=mode)
            assert res.hits and res.hits[0].id in {f"d{i}" for i in range(24)}
    finally:
        engine.close()


def test_teacher_agreement_qrels_follow_the_ensemble(adapted: tuple[Path, Path, list[str]]):
    from sparseretr.training.teachers import TeacherCache

    _, out, _ = adapted
    cache = TeacherCache.load(out / "teachers.npz")
    assert set(cache.scores) == {"dense", "bm25", "splade"}
    q = 0
    mix = cache.ensemble(q, {"dense": 1.0, "bm25": 1.0, "splade": 1.0}, 1.0)
    assert np.all((mix >= 0) & (mix <= 1.0 + 1e-6))


def test_adapt_refuses_a_bad_generator_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["adapt", "--corpus", str(tmp_path / "missing"), "--out", str(tmp_path / "run"),
                 "--generator", "title+t5", "--quiet"])  # fmt: skip
    assert code != 0
    assert "generator" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- trainer pieces the command relies on ----------------------------------------------------
def test_fit_budget_sizes_the_run(tmp_path: Path) -> None:
    from sparseretr.training.trainer import Trainer

    t = Trainer.__new__(Trainer)
    t.total_steps, t.step, t.history = 10_000, 4, [{"eval_s": 20.0}]
    t.eval_every = 0

    class Cfg:
        class eval:  # noqa: N801
            evals = 4

    t.cfg = Cfg
    t._fit_budget(600.0, [9.0, 2.0, 2.0, 2.0])  # 600 s left, 2 s/step, 4 evals of 20 s, 30 s
    assert t.total_steps == 4 + (600 - 80 - 30) // 2
    assert t.eval_every == t.total_steps // 4
    t.total_steps = 100
    t._fit_budget(600.0, [9.0, 2.0])
    assert t.total_steps == 100  # never more than the configured run


def test_dense_option_picks_the_teacher_and_the_dense_side() -> None:
    """`adapt --dense MODEL`: the dense teacher (and so the adapted index's dense side, which
    reuses the teacher's document vectors) is that model; the prior weight is the default."""
    cfg = default_config(AdaptOptions(corpus="c", out="o", dense="all-mpnet-base-v2"))
    dense = [m for m in cfg["teachers"]["members"] if m["kind"] == "dense"]
    assert [m["model"] for m in dense] == ["all-mpnet-base-v2"]
    assert cfg["lexical_weight"] == 2.0 and cfg["loss"]["calibrate_scale"] is True
