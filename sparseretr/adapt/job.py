"""`sparseretr adapt`: fit an inference-free model to one corpus with no labels at all.

The recipe is the supervised one (IDF-aware FLOPS + KL distillation from a per-query
normalized ensemble of dense, BM25 and sparse teachers) with the labels taken out: queries are
cut from the documents (pseudo_queries.py), candidates are mined by BM25 and the dense model
over the corpus, and the teacher ensemble alone says which candidates matter. Selection and
early stopping use agreement with the teacher on held-out pseudo-queries, never a judgement.

The corpus file is the only input read: this module never builds a path to `queries.jsonl` or
`qrels/`, and tests/test_adapt.py checks it with an audit hook on every file opened.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.adapt.pseudo_queries import PseudoQuery, generate, parse_kinds
from sparseretr.corpus import corpus_file, doc_text, iter_corpus
from sparseretr.index.errors import UserInputError
from sparseretr.models import DEFAULT_DENSE, DEFAULT_SPLADE
from sparseretr.training.config import TrainConfig, set_option
from sparseretr.training.data import TrainingData

logger = logging.getLogger(__name__)

REPORT_FILE = "adapt_report.json"
QUERIES_FILE = "pseudo_queries.jsonl"
MODEL_DIR = "model"
INDEX_DIR = "index"


@dataclass
class AdaptOptions:
    """What `sparseretr adapt` takes; `overrides` are training-config assignments (`--set`)."""

    corpus: str
    out: str
    model: str = DEFAULT_SPLADE
    dense: str = DEFAULT_DENSE  # the dense teacher, also the adapted index's dense side
    minutes: float = 30.0
    generator: str = "mix"
    n_queries: int = 4000
    heldout: int = 48
    seed: int = 0
    index: bool = False
    device: str | None = None
    resume: bool = True
    show_progress: bool = True
    overrides: list[str] = field(default_factory=list)


def default_config(o: AdaptOptions) -> dict[str, Any]:
    """The adaptation defaults as a training config (every key can be overridden by --set).

    Why these values (see the README's "Bring your own corpus" for the measurements):
    - KL only, over groups drawn from the mined candidates without the source document: a
      pseudo-query is cut from its source, so the source tops teacher and student alike and a
      group holding it teaches nothing (KL < 5e-4 after 36 steps, and FLOPS alone then emptied
      the documents); the teacher's order among the other candidates is the signal. No
      InfoNCE on the source: it is not a judgement (and OpenSearch reports InfoNCE alone does
      not help doc-only models).
    - 8 queries x 8 candidates: the same 64 documents per step as the supervised configs.
    - Student logits are scores / 5 (kl_temperature 5, teacher scale 100 = 20 x 5, so the
      teacher's target logits stay 0-20): IDF-weighted scores span tens, and at temperature 1
      KL can only match the softer teacher by shrinking every document weight, which emptied
      the documents (~250 -> 26 non-zeros in 50 steps with FLOPS masked off). The supervised
      configs found the same for InfoNCE (temperature 5).
    - IDF-aware FLOPS on documents with more than 128 non-zeros only (the l0 mask): KL alone is
      a small loss (0.003-0.05 here, against InfoNCE's ~1 in supervised training), so the
      supervised lambda (0.02) without the mask drove documents from ~250 to ~45 non-zeros in
      50 steps and held-out teacher agreement fell from 0.79 to 0.70 (NFCorpus, label-free).
      The mask caps a document's cost near 128 terms on any corpus instead.
    - Equal teacher weights after per-query min-max normalization: no corpus tells us which
      teacher to trust more without labels.
    - A lexical prior of weight 2 under the learned document weights (encoders/lexical.py):
      the student starts as BM25-over-word-pieces fused with the starting model and learns
      the rest as a residual. Weight 2 was the best or within 0.001 of it for the untrained
      model on SciFact train and NFCorpus dev (weights 1-10 all beat both parts alone).
    """
    out = Path(o.out)
    return {
        "model": o.model,
        "encoder": "inference-free",
        "lexical_weight": 2.0,
        "output_dir": str(out),
        "data": {"path": str(o.corpus), "max_length": 256, "query_max_length": 64},
        "optim": {
            "epochs": 1000,  # the time budget decides (fit_budget)
            "max_minutes": o.minutes,
            "fit_budget": True,
            "batch_size": 8,
            "negatives": 7,
            "negative_depth": 50,
            "groups": "candidates",
            "lr": 1e-4,
            "warmup_steps": 20,
            "schedule": "linear",
            "dtype": "auto",
            "device": o.device,
            "seed": o.seed,
        },
        "loss": {
            "contrastive": 0.0,
            "kl": 1.0,
            "kl_temperature": 5.0,
            "calibrate_scale": True,
            "flops_doc": 0.02,
            "doc_nnz_threshold": 128,
            "flops_warmup_steps": 50,
            "query_weights": "idf",
        },
        "teachers": {
            "cache": str(out / "teachers.npz"),
            "members": [
                {"kind": "dense", "weight": 1.0, "model": o.dense, "max_length": 256},
                {"kind": "bm25", "weight": 1.0},
                {"kind": "splade", "weight": 1.0, "model": o.model, "max_length": 256},
            ],
            "miners": ["bm25", "dense"],
            "depth": 50,
            "scale": 100.0,
        },
        "eval": {
            "target": "teacher",
            "teacher_depth": 10,
            "pool": "candidates",
            "pool_depth": 10,
            "at_start": True,
            "every_epochs": 0,
            "evals": 4,
            "select_best": True,
            "batch_size": 32,
        },
        "checkpoint_every": 50,
        "keep_checkpoints": 2,
        "resume": o.resume,
        "sentence_transformers_layout": True,
    }


@dataclass
class Corpus:
    ids: list[str]
    titles: list[str]
    bodies: list[str]

    @property
    def texts(self) -> list[str]:
        """What the encoders see, exactly as an index build gives it (corpus.doc_text)."""
        pairs = zip(self.titles, self.bodies, strict=True)
        return [doc_text({"title": t, "text": b}) for t, b in pairs]


def read_corpus(path: str | Path) -> Corpus:
    """The documents, from corpus.jsonl(.gz) alone (a BEIR folder's queries are not read)."""
    ids, titles, bodies = [], [], []
    for doc in iter_corpus(corpus_file(path)):
        ids.append(doc["id"])
        titles.append(doc["title"])
        bodies.append(doc["text"])
    if len(ids) < 2:
        raise UserInputError(f"corpus {path} holds {len(ids)} document(s); adaptation needs 2+")
    if len(set(ids)) != len(ids):
        raise UserInputError(f"corpus {path} repeats document ids")
    return Corpus(ids, titles, bodies)


def training_data(corpus: Corpus, queries: list[PseudoQuery], heldout: int, seed: int):
    """TrainingData whose queries are pseudo-queries; each one's 'positive' is its source
    document (kept among the candidates; the teacher ensemble, not this, sets the targets)."""
    n = len(queries)
    n_held = min(max(heldout, 1), n // 4) if n >= 8 else 0
    perm = np.random.default_rng([seed, 1]).permutation(n)
    return TrainingData(
        doc_ids=corpus.ids,
        doc_texts=corpus.texts,
        query_ids=[f"pq-{i}" for i in range(n)],
        query_texts=[q.text for q in queries],
        positives=[np.array([q.doc], dtype=np.int64) for q in queries],
        train=np.sort(perm[n_held:]),
        heldout=np.sort(perm[:n_held]),
    )


def _write_queries(path: Path, corpus: Corpus, queries: list[PseudoQuery]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, q in enumerate(queries):
            row = {"_id": f"pq-{i}", "text": q.text, "source": corpus.ids[q.doc], "kind": q.kind}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def adapt(o: AdaptOptions) -> dict[str, Any]:
    """Pseudo-queries -> teachers -> training -> model folder (and, with o.index, an index)."""
    from sparseretr.training.trainer import Trainer

    if o.minutes <= 0:
        raise UserInputError(f"--minutes must be > 0, got {o.minutes}")
    parse_kinds(o.generator)  # a bad --generator fails before the corpus is read
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    out = Path(o.out)
    raw = default_config(o)
    for assignment in o.overrides:
        set_option(raw, assignment)
    cfg = TrainConfig.from_dict(raw)
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    corpus = read_corpus(o.corpus)
    queries = generate(
        corpus.titles, corpus.bodies, kind=o.generator, n_queries=o.n_queries + o.heldout,
        seed=o.seed,
    )  # fmt: skip
    _write_queries(out / QUERIES_FILE, corpus, queries)
    data = training_data(corpus, queries, o.heldout, o.seed)
    phases["pseudo_queries"] = time.perf_counter() - t

    t = time.perf_counter()
    trainer = Trainer(cfg, data=data, show_progress=o.show_progress)  # builds the teacher cache
    phases["teachers"] = time.perf_counter() - t
    t = time.perf_counter()
    train_report = trainer.train()
    phases["train"] = time.perf_counter() - t

    report: dict[str, Any] = {
        "corpus": str(corpus_file(o.corpus)),
        "n_docs": len(corpus.ids),
        "model_dir": str(out / MODEL_DIR),
        "pseudo_queries": {
            "generator": o.generator,
            "n": len(queries),
            "train": int(data.train.size),
            "heldout": int(data.heldout.size),
            "kinds": dict(Counter(q.kind for q in queries)),
            "mean_words": round(float(np.mean([len(q.text.split()) for q in queries])), 1),
        },
        "training": {k: v for k, v in train_report.items() if k != "config"},
        "config": cfg.to_dict(),
    }
    if o.index:
        t = time.perf_counter()
        report["index"] = build_adapted_index(cfg, trainer, corpus, out / INDEX_DIR, o)
        phases["index"] = time.perf_counter() - t
    phases["total"] = time.perf_counter() - t0
    report["phases_s"] = {k: round(v, 1) for k, v in phases.items()}
    report["cpu_minutes_per_1000_docs"] = round(phases["total"] / 60 / (len(corpus.ids) / 1000), 2)
    report["device"] = str(trainer.device)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))
    return report


def build_adapted_index(
    cfg: TrainConfig, trainer: Any, corpus: Corpus, path: Path, o: AdaptOptions
) -> dict[str, Any]:
    """The adapted model's index with its BM25 side and the dense teacher's vectors as its
    dense side (the same model and max length a `--dense` build uses, already computed)."""
    from sparseretr.batch import BatchOptions, build_batch
    from sparseretr.encoders import create_encoder
    from sparseretr.index.attach import attach_dense
    from sparseretr.training.teachers import dense_corpus

    encoder = create_encoder(
        "inference-free",
        model=str(Path(cfg.output_dir) / MODEL_DIR),
        max_length=cfg.data.max_length,  # documents as long as in training
        device=o.device,
    )
    options = BatchOptions(with_bm25=True, overwrite=True, show_progress=o.show_progress)
    summary = build_batch(o.corpus, path, encoder, options)
    dense = next((m for m in cfg.teachers.members if m.kind == "dense"), None)
    if dense is not None:
        enc, emb = dense_corpus(trainer.data, dense, Path(cfg.teachers.cache), o.show_progress)
        attach_dense(path, emb, enc.config(), corpus.ids)
    return summary.as_dict()
