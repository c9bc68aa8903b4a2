"""Training configuration: nested dataclasses read from YAML or TOML, unknown keys rejected.

A typo in a config file must fail before a long run starts, not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from sparseretr.index.errors import UserInputError

ENCODER_TYPES = ("inference-free", "siamese")


@dataclass
class DataConfig:
    """BEIR-format training data; held-out queries come out of the same (train) split."""

    path: str = "../shared/data/beir/scifact"
    split: str = "train"
    heldout_fraction: float = 0.1
    heldout_queries: int | None = None  # overrides heldout_fraction when set
    max_length: int = 256  # document tokens
    query_max_length: int = 64
    limit_queries: int | None = None  # debugging: use only the first N queries


@dataclass
class OptimConfig:
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (all epochs)
    max_minutes: float | None = None  # wall-clock budget: stop cleanly, evaluate, save
    # With max_minutes: after the first steps, shorten the run to the steps that fit the budget
    # (evaluations included), so the LR schedule decays to zero when the time is up instead of
    # being cut mid-way.
    fit_budget: bool = False
    batch_size: int = 16  # queries per micro-batch
    negatives: int = 3  # hard negatives per query
    grad_accum: int = 1
    lr: float = 5e-5
    idf_lr: float = 1e-2  # learned IDF (inference-free, loss.learn_idf)
    weight_decay: float = 0.01
    # Freeze the vocabulary projection (output embeddings, tied to the input ones, and bias):
    # Adam moves every vocabulary row by ~lr per step however faint its gradient, which on a
    # tiny model shifts the logits of rare terms wholesale and collapses documents.
    freeze_vocab: bool = False
    warmup_steps: int = 100
    schedule: str = "linear"  # linear decay to 0 after warm-up, or "constant"
    max_grad_norm: float = 1.0
    # autocast: auto (bf16/fp16 on GPU; on CPU bf16 where native, else fp32), float32, bfloat16
    dtype: str = "auto"
    device: str | None = None
    threads: int | None = None  # torch CPU threads (None: torch's default)
    deterministic: bool = False  # torch.use_deterministic_algorithms: bitwise repeatable, slower
    seed: int = 42
    negative_depth: int = 50  # hard negatives are drawn from each miner's top-N
    # "positive": a group is one positive + `negatives` mined negatives; "candidates": all
    # negatives + 1 from the mined candidates (pseudo-queries: see training.data.BatchSampler)
    groups: str = "positive"


@dataclass
class LossConfig:
    contrastive: float = 1.0  # weight of InfoNCE (in-batch + hard negatives)
    temperature: float = 1.0
    in_batch: bool = True
    kl: float = 0.0  # weight of KL distillation against the teacher ensemble
    kl_temperature: float = 1.0
    margin_mse: float = 0.0  # weight of MarginMSE against the teacher ensemble
    # Student scores are multiplied by score_scale before KL / MarginMSE. calibrate_scale sets
    # it at the start of a run so that the student's score spread within a group matches the
    # teacher's (a student with a lexical prior scores ~2-3x wider than the teacher's targets,
    # and KL would then shrink the learned weights to nothing to soften its distribution).
    score_scale: float = 1.0
    calibrate_scale: bool = False
    flops_doc: float = 1e-3
    flops_query: float = 1e-3  # siamese only: inference-free queries are not learned
    flops_warmup_steps: int = 100
    doc_nnz_threshold: int | None = None  # l0-mask: FLOPS only on docs with more non-zeros
    activation: str = "log1p"  # or "log1p_log1p" (l0-style)
    query_weights: str = "idf"  # inference-free: "idf" (IDF-aware FLOPS) or "uniform" (plain)
    learn_idf: bool = False  # inference-free: train the IDF vector too


@dataclass
class TeacherMember:
    kind: str  # dense | bm25 | splade
    weight: float = 1.0
    model: str | None = None  # dense / splade model (defaults: all-MiniLM-L6-v2, splade-tiny)
    max_length: int | None = None


def _default_members() -> list[TeacherMember]:
    return [TeacherMember("dense", 0.5), TeacherMember("bm25", 0.5)]


@dataclass
class TeacherConfig:
    """Who mines hard negatives and who scores them; cached to `cache` once."""

    cache: str | None = None  # default: <output_dir>/teachers.npz
    members: list[TeacherMember] = field(default_factory=_default_members)
    miners: list[str] = field(default_factory=lambda: ["bm25", "dense"])
    depth: int = 100  # candidates per query per miner
    scale: float = 20.0  # normalized ensemble score [0, 1] * scale = KL target logit


@dataclass
class EvalConfig:
    every_epochs: int = 1  # 0: only at the end
    every_steps: int = 0  # also every N optimizer steps (0: off)
    at_start: bool = True  # also evaluate the starting model (the trend's first point)
    pool: str = "candidates"  # "candidates": held-out queries' mined candidates; "full": corpus
    pool_depth: int = 30  # per miner, for pool="candidates"
    batch_size: int = 32
    # "labels": nDCG against the split's judged positives. "teacher": agreement with the
    # teacher ensemble (its top `teacher_depth` candidates, graded by rank), for data that has
    # no labels (sparseretr adapt): no choice may depend on labels there.
    target: str = "labels"
    teacher_depth: int = 10
    evals: int = 0  # with optim.fit_budget: this many evaluations spread over the run
    select_best: bool = False  # export the evaluated state with the best held-out nDCG@10
    patience: int = 0  # stop after this many evaluations without improvement (0: never)


@dataclass
class TrainConfig:
    model: str = "splade-tiny"
    encoder: str = "inference-free"
    # Inference-free: weight of the document-side lexical prior (encoders/lexical.py), which
    # the model's weights are then trained on top of. None: the starting model's own (if its
    # folder has one); 0: none.
    lexical_weight: float | None = None
    output_dir: str = "runs/train"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teachers: TeacherConfig = field(default_factory=TeacherConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint_every: int = 200  # optimizer steps; a checkpoint is also written at the end
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest checkpoint in output_dir when there is one
    log_every: int = 10
    sentence_transformers_layout: bool = True

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_TYPES:
            raise UserInputError(f"encoder must be one of {ENCODER_TYPES}, got {self.encoder!r}")
        if self.loss.query_weights not in ("idf", "uniform"):
            raise UserInputError(
                f"loss.query_weights: idf or uniform, got {self.loss.query_weights!r}"
            )
        if self.optim.groups not in ("positive", "candidates"):
            raise UserInputError(
                f"optim.groups must be positive or candidates: {self.optim.groups!r}"
            )
        if self.optim.groups == "candidates" and self.loss.contrastive:
            raise UserInputError(
                "optim.groups=candidates has no positive in a group for loss.contrastive; "
                "distil with loss.kl or loss.margin_mse"
            )
        if self.loss.score_scale <= 0:
            raise UserInputError(f"loss.score_scale must be > 0, got {self.loss.score_scale}")
        if self.lexical_weight is not None and self.lexical_weight < 0:
            raise UserInputError(f"lexical_weight must be >= 0, got {self.lexical_weight}")
        if self.eval.target not in ("labels", "teacher"):
            raise UserInputError(f"eval.target must be labels or teacher, got {self.eval.target!r}")
        if self.eval.pool not in ("candidates", "full"):
            raise UserInputError(f"eval.pool must be candidates or full, got {self.eval.pool!r}")
        if self.optim.schedule not in ("linear", "constant"):
            raise UserInputError(
                f"optim.schedule must be linear or constant: {self.optim.schedule}"
            )
        for m in self.teachers.members:
            if m.kind not in ("dense", "bm25", "splade"):
                raise UserInputError(f"teacher kind must be dense, bm25 or splade, got {m.kind!r}")
        if (self.loss.kl or self.loss.margin_mse) and not self.teachers.members:
            raise UserInputError("loss.kl / loss.margin_mse need at least one teacher member")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return _build(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise UserInputError(f"config section {where or '<root>'} must be a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UserInputError(f"unknown config key(s) in {where or '<root>'}: {', '.join(unknown)}")
    kwargs = {}
    for key, value in raw.items():
        hint = hints[key]
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, path)
        elif key == "members":
            kwargs[key] = [_build(TeacherMember, m, f"{path}[{i}]") for i, m in enumerate(value)]
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """YAML 1.1 reads `1e-3` as a string: turn numeric strings into the declared number type."""
    kinds = getattr(hint, "__args__", (hint,))
    if isinstance(value, str) and float in kinds:
        try:
            return float(value)
        except ValueError as e:
            raise UserInputError(f"config key {path} must be a number, got {value!r}") from e
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds:
        return float(value)
    return value


def set_option(raw: dict[str, Any], assignment: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to a raw config mapping, in place."""
    import yaml

    key, sep, value = assignment.partition("=")
    if not sep:
        raise UserInputError(f"--set expects KEY=VALUE, got {assignment!r}")
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = yaml.safe_load(value)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """YAML (.yaml/.yml), TOML (.toml) or JSON, by extension."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    if p.suffix == ".toml":
        return tomllib.loads(text)
    if p.suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_with_extends(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config may name `extends: other.yaml` (relative to itself): ablations then state only
    what they change. Mappings merge key by key; lists and scalars replace."""
    p = Path(path).resolve()
    if p in _seen:
        raise UserInputError(f"config {p} extends itself")
    raw = read_config_file(p)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    return _merge(read_with_extends(p.parent / base, (*_seen, p)), raw)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    raw = read_with_extends(path)
    for assignment in overrides:
        set_option(raw, assignment)
    return TrainConfig.from_dict(raw)
