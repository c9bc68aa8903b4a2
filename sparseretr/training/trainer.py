"""Trainer for inference-free and siamese SPLADE models on BEIR-format data.

The trainer owns one of our encoders (InferenceFreeEncoder or SpladeEncoder) and trains its
model in place: the differentiable forward shares the encoder's model, head and tokenizer,
and held-out evaluation calls the encoder's own encode_documents / encode_queries, so the
numbers measured during training are those of the exported model.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparseretr.encoders._torch import pick_device, resolve_dtype
from sparseretr.encoders.inference_free import InferenceFreeEncoder
from sparseretr.encoders.lexical import LexicalPrior
from sparseretr.encoders.splade import SpladeEncoder
from sparseretr.index.vectors import SparseVectors
from sparseretr.losses import (
    FlopsSchedule,
    contrastive_loss,
    flops,
    group_scores,
    idf_query_vectors,
    kl_distillation,
    margin_mse,
)
from sparseretr.training.config import TrainConfig
from sparseretr.training.data import Batch, BatchSampler, TrainingData, load_training_data
from sparseretr.training.export import export_model
from sparseretr.training.forward import encode_for_training, split_head
from sparseretr.training.teachers import TeacherCache, load_or_build

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
REPORT_FILE = "training_report.json"
METRICS_FILE = "metrics.jsonl"
FIT_AFTER_STEPS = 4  # optim.fit_budget: steps timed before the run is sized to the budget


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sparsity_stats(docs: SparseVectors, queries: SparseVectors) -> dict[str, float]:
    """Average non-zeros per document / query, and FLOPS = sum_t p_q(t) * p_d(t).

    p_x(t) is the fraction of queries / documents where term t is non-zero, so FLOPS is the
    expected number of multiply-adds per (query, document) pair (the SPLADE papers' measure).
    """
    d, q = docs.to_scipy(), queries.to_scipy()
    p_d = np.bincount(d.indices, minlength=docs.vocab_size) / max(1, d.shape[0])
    p_q = np.bincount(q.indices, minlength=queries.vocab_size) / max(1, q.shape[0])
    return {
        "nnz_per_doc": docs.nnz / max(1, len(docs)),
        "nnz_per_query": queries.nnz / max(1, len(queries)),
        "flops": float(p_q @ p_d),
    }


class Trainer:
    """Everything one training run needs, set up from a TrainConfig."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        data: TrainingData | None = None,
        teachers: TeacherCache | None = None,
        show_progress: bool = True,
    ) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.show_progress = show_progress
        o = cfg.optim
        if o.threads:
            torch.set_num_threads(o.threads)
        if o.deterministic:
            torch.use_deterministic_algorithms(True)
        seed_everything(o.seed)
        self.data = data or load_training_data(cfg.data, o.seed)
        self.device = pick_device(o.device)
        self.dtype = resolve_dtype(self.device, o.dtype, cpu_bf16=True)
        self.inference_free = cfg.encoder == "inference-free"
        opts: dict[str, Any] = dict(
            max_length=cfg.data.max_length,
            query_max_length=cfg.data.query_max_length,
            batch_size=cfg.eval.batch_size,
            device=str(self.device),
            dtype={None: "float32"}.get(self.dtype, str(self.dtype).removeprefix("torch.")),
            activation="log1p",  # the configured activation is the trainer's (_activate)
        )
        self.doc_prior = None  # inference-free lexical prior rows, [docs, V] CSR
        if self.inference_free:
            if cfg.lexical_weight is not None:
                opts["lexical"] = LexicalPrior(cfg.lexical_weight) if cfg.lexical_weight else {}
            self.encoder: SpladeEncoder | InferenceFreeEncoder = InferenceFreeEncoder(
                cfg.model, **opts
            )
            self.splade = self.encoder.doc_encoder
            self.idf = self._initial_idf()  # also fits the prior's avgdl
            if self.encoder.lexical is not None:
                self.doc_prior = self.encoder.lexical_vectors(self.data.doc_texts).to_scipy()
        else:
            self.encoder = self.splade = SpladeEncoder(cfg.model, **opts)
            self.idf = None
        self.model = self.splade.model
        self.doc_tokens = self.splade.token_ids(self.data.doc_texts, cfg.data.max_length, True)
        # Inference-free queries are token bags (no specials); siamese queries go through the
        # model with special tokens: each exactly as the encoder's encode_queries tokenizes.
        self.query_tokens = self.splade.token_ids(
            self.data.query_texts, cfg.data.query_max_length, not self.inference_free
        )
        cache_path = cfg.teachers.cache or self.out / "teachers.npz"
        self.teachers = teachers or load_or_build(
            self.data, cfg.teachers, cache_path, show_progress
        )
        weights = {m.kind: m.weight for m in cfg.teachers.members}
        self.teacher_weights = weights
        self.sampler = BatchSampler(
            self.data,
            batch_size=o.batch_size,
            negatives=o.negatives,
            seed=o.seed,
            negatives_for=lambda q: self.teachers.negatives(q, o.negative_depth),
            teacher_for=(self.teachers.target_fn(weights, cfg.teachers.scale) if weights else None),
            groups=o.groups,
        )
        self.steps_per_epoch = len(self.sampler) // o.grad_accum
        if self.steps_per_epoch < 1:
            raise ValueError("fewer training queries than batch_size * grad_accum")
        self.total_steps = o.max_steps or o.epochs * self.steps_per_epoch
        self.flops_schedule = FlopsSchedule(
            cfg.loss.flops_doc,
            0.0 if self.inference_free else cfg.loss.flops_query,
            cfg.loss.flops_warmup_steps,
        )
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.device.type == "cuda" and self.dtype == torch.float16
        )
        self.eval_pool = (
            np.arange(len(self.data.doc_ids))
            if cfg.eval.pool == "full"
            else self.teachers.pool(self.data.heldout, cfg.eval.pool_depth)
        )
        self.step = 0
        self.score_scale = cfg.loss.score_scale
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.eval_every = cfg.eval.every_steps
        self.best: dict[str, Any] | None = None  # select_best: the best evaluated state
        if cfg.resume:
            latest = self.latest_checkpoint()
            if latest is not None:
                self.load_checkpoint(latest)
        if self.step == 0:  # a fresh run: no records of an earlier, abandoned one
            (self.out / METRICS_FILE).unlink(missing_ok=True)
            if cfg.loss.calibrate_scale and self.sampler.teacher_for is not None:
                self.score_scale = self._calibrated_scale()  # a resumed run keeps its own

    # -- set-up -------------------------------------------------------------------------------
    def _initial_idf(self) -> torch.nn.Parameter | torch.Tensor:
        """Corpus IDF (or the model's idf.json), as the query side of training and export.

        query_weights="uniform" (the plain-FLOPS ablation) trains with weight 1 on every token
        that has an IDF, and exports those weights, so inference sees what training saw.
        """
        enc = self.encoder
        assert isinstance(enc, InferenceFreeEncoder)
        enc.fit(self.data.doc_texts)  # no-op when the model folder ships idf.json
        idf = torch.tensor(enc.idf, dtype=torch.float32, device=self.device)
        if self.cfg.loss.query_weights == "uniform":
            idf = (idf > 0).float()
        if self.cfg.loss.learn_idf:
            return torch.nn.Parameter(idf)
        return idf

    def _calibrated_scale(self, batches: int = 8) -> float:
        """Teacher / student mean within-group standard deviation of scores, over the first
        training batches with the starting model: the factor that gives the student's
        distribution over a group the teacher's sharpness before any step is taken."""
        student, teacher = [], []
        self.model.eval()
        with torch.no_grad():
            for i in range(min(batches, len(self.sampler))):
                batch = self.sampler.batch(0, i)
                _, queries, scored = self.student(batch)
                scores = group_scores(queries @ scored.T, batch.docs.shape[1])
                student.append(float(scores.float().std(1).mean()))
                teacher.append(float(np.std(batch.teacher, axis=1).mean()))
        self.model.train()
        scale = float(np.mean(teacher) / max(np.mean(student), 1e-6))
        logger.info("student score scale calibrated to %.3f", scale)
        return scale

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.cfg.optim.freeze_vocab:
            parts = split_head(self.splade.head)
            if parts is None:
                raise ValueError("optim.freeze_vocab: unsupported MLM head for this model")
            for p in parts[1:]:
                p.requires_grad_(False)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
        groups: list[dict[str, Any]] = [
            {"params": decay, "weight_decay": self.cfg.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if isinstance(self.idf, torch.nn.Parameter):
            groups.append({"params": [self.idf], "weight_decay": 0.0, "lr": self.cfg.optim.idf_lr})
        return torch.optim.AdamW(groups, lr=self.cfg.optim.lr)

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.optim.warmup_steps
        if warm > 0 and step < warm:
            return (step + 1) / warm
        if self.cfg.optim.schedule == "constant":
            return 1.0
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warm))

    # -- one step -------------------------------------------------------------------------------
    def _false_negative_mask(self, batch: Batch) -> torch.Tensor:
        """[B, B*G]: True where a batch document is a judged positive of the query, other than
        its label (in-batch InfoNCE must not push a relevant document down)."""
        b, g = batch.docs.shape
        flat = batch.docs.reshape(-1)
        mask = np.stack([np.isin(flat, self.data.positives[q]) for q in batch.queries])
        mask[np.arange(b), np.arange(b) * g] = False
        return torch.from_numpy(mask).to(self.device)

    def query_reps(self, queries: np.ndarray) -> torch.Tensor:
        ids = [self.query_tokens[q] for q in queries]
        if self.inference_free:
            assert self.idf is not None
            return idf_query_vectors(ids, self.idf)
        return encode_for_training(
            self.splade, ids, activation=self.cfg.loss.activation, dtype=self.dtype
        )

    def prior_rows(self, docs: np.ndarray) -> torch.Tensor | float:
        """The lexical prior of these documents as dense rows (0 without a prior). It is
        fixed: gradients and FLOPS see the model's weights only, which learn the residual."""
        if self.doc_prior is None:
            return 0.0
        rows = self.doc_prior[docs].toarray()
        return torch.from_numpy(rows).to(self.device)

    def student(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(document weights the model makes, query vectors, documents as the index will
        hold them: the model's weights plus the fixed lexical prior) for a batch."""
        flat = batch.docs.reshape(-1)
        docs = encode_for_training(
            self.splade,
            [self.doc_tokens[d] for d in flat],
            activation=self.cfg.loss.activation,
            dtype=self.dtype,
        )
        return docs, self.query_reps(batch.queries), docs + self.prior_rows(flat)

    def losses(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of ranking, distillation and FLOPS terms for one micro-batch."""
        lc = self.cfg.loss
        b, g = batch.docs.shape
        docs, queries, scored = self.student(batch)
        lam_d, lam_q = self.flops_schedule(step)
        parts: dict[str, torch.Tensor] = {}
        if lc.contrastive:
            parts["contrastive"] = lc.contrastive * contrastive_loss(
                queries,
                scored,
                g,
                temperature=lc.temperature,
                in_batch=lc.in_batch,
                mask=self._false_negative_mask(batch) if lc.in_batch else None,
            )
        if batch.teacher is not None and (lc.kl or lc.margin_mse):
            own = group_scores(queries @ scored.T, g) * self.score_scale
            teacher = torch.from_numpy(batch.teacher).to(self.device)
            if lc.kl:
                parts["kl"] = lc.kl * kl_distillation(own, teacher, lc.kl_temperature)
            if lc.margin_mse:
                parts["margin_mse"] = lc.margin_mse * margin_mse(own, teacher)
        reg_d = flops(docs, lc.doc_nnz_threshold)
        parts["reg_d"] = lam_d * reg_d
        stats = {
            "flops_d": float(reg_d.detach()),
            "nnz_d": float((docs > 0).sum(1).float().mean()),
            "nnz_q": float((queries > 0).sum(1).float().mean()),
        }
        if not self.inference_free:
            reg_q = flops(queries)
            parts["reg_q"] = lam_q * reg_q
            stats["flops_q"] = float(reg_q.detach())
        total = sum(parts.values(), torch.zeros((), device=self.device))
        stats.update({k: float(v.detach()) for k, v in parts.items()}, loss=float(total.detach()))
        return total, stats

    def train_step(self) -> dict[str, float]:
        """One optimizer step over grad_accum micro-batches; batches follow from self.step."""
        o = self.cfg.optim
        self.model.train()
        epoch, k = divmod(self.step, self.steps_per_epoch)
        acc: dict[str, float] = {}
        for m in range(o.grad_accum):
            batch = self.sampler.batch(epoch, k * o.grad_accum + m)
            loss, stats = self.losses(batch, self.step)
            self.scaler.scale(loss / o.grad_accum).backward()
            for key, v in stats.items():
                acc[key] = acc.get(key, 0.0) + v / o.grad_accum
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        acc["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        acc["lr"] = self.scheduler.get_last_lr()[0]
        return acc

    # -- evaluation ---------------------------------------------------------------------------
    def current_idf(self) -> np.ndarray | None:
        if self.idf is None:
            return None
        return torch.relu(self.idf.detach()).float().cpu().numpy()

    def sync_encoder(self) -> None:
        """Point the encoder's query side at the (possibly learned) training IDF."""
        if isinstance(self.encoder, InferenceFreeEncoder):
            self.encoder.idf = self.current_idf()

    def _activate(self, vectors: SparseVectors) -> SparseVectors:
        """The encoders apply log1p(ReLU) once; the l0-style activation adds a second log1p,
        which maps non-zeros to non-zeros, so it is applied to the stored weights."""
        if self.cfg.loss.activation == "log1p":
            return vectors
        return SparseVectors(
            vectors.indptr, vectors.indices, np.log1p(vectors.data), vectors.vocab_size
        )

    def eval_qrels(self, rows: np.ndarray) -> dict[str, dict[str, int]]:
        """What held-out queries are scored against: judged positives, or, with no labels,
        the teacher ensemble's top candidates graded by rank (agreement with the teacher)."""
        if self.cfg.eval.target == "labels":
            return self.data.qrels(rows)
        depth = self.cfg.eval.teacher_depth
        out = {}
        for q in rows:
            scores = self.teachers.ensemble(int(q), self.teacher_weights, 1.0)
            top = np.argsort(-scores, kind="stable")[:depth]
            cands = self.teachers.cands[int(q)]
            out[self.data.query_ids[q]] = {
                self.data.doc_ids[cands[j]]: depth - r for r, j in enumerate(top)
            }
        return out

    def evaluate(self, label: str) -> dict[str, Any]:
        """nDCG@10 of the held-out train queries over the eval pool, plus sparsity.

        A final fit on every train query (held-out size 0, after choosing the settings on a
        held-out split) has nothing to score: no record, so no number is made up."""
        from sparseretr.metrics import evaluate

        if self.data.heldout.size == 0:
            logger.info("%s: no held-out queries, evaluation skipped", label)
            return {}
        t0 = time.perf_counter()
        self.model.eval()
        self.sync_encoder()
        pool = self.eval_pool
        held = self.data.heldout
        docs = self._activate(self.encoder.encode_documents([self.data.doc_texts[i] for i in pool]))
        queries = self.encoder.encode_queries([self.data.query_texts[q] for q in held])
        if not self.inference_free:
            queries = self._activate(queries)
        scores = (queries.to_scipy() @ docs.to_scipy().T).toarray()
        results = {}
        for row, q in enumerate(held):
            top = np.argsort(-scores[row], kind="stable")[:100]
            results[self.data.query_ids[q]] = {
                self.data.doc_ids[pool[j]]: float(scores[row, j]) for j in top if scores[row, j] > 0
            }
        metrics = evaluate(self.eval_qrels(held), results, k_values=(10, 100))
        record = {
            "label": label,
            "step": self.step,
            "ndcg@10": metrics["NDCG@10"],
            "recall@100": metrics["Recall@100"],
            **sparsity_stats(docs, queries),
            "pool_docs": int(pool.size),
            "heldout_queries": int(held.size),
            "eval_s": round(time.perf_counter() - t0, 2),
        }
        self.history.append(record)
        self._log({"event": "eval", **record})
        if self.cfg.eval.select_best and (
            self.best is None or record["ndcg@10"] > self.best["record"]["ndcg@10"]
        ):
            self.best = {"record": record, "state": self._model_state()}
        self.model.train()
        return record

    def _model_state(self) -> dict[str, Any]:
        """A CPU copy of what export writes: the model weights and the (learned) IDF."""
        weights = self.model.state_dict().items()
        return {
            "model": {k: v.detach().to("cpu", copy=True) for k, v in weights},
            "idf": None if self.idf is None else self.idf.detach().to("cpu", copy=True),
        }

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.idf is not None and state["idf"] is not None:
            with torch.no_grad():
                self.idf.copy_(state["idf"].to(self.device))

    def _evals_since_best(self) -> int:
        if self.best is None:
            return 0
        steps = [h["step"] for h in self.history]
        return len(steps) - 1 - steps.index(self.best["record"]["step"])

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        return sorted((self.out / CHECKPOINT_DIR).glob("step-*.pt"))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save_checkpoint(self) -> Path:
        """Model, optimizer, scheduler, scaler, step, RNG states, IDF and the eval history."""
        folder = self.out / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "idf": None if self.idf is None else self.idf.detach().cpu(),
            "score_scale": self.score_scale,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "history": self.history,
            "train_seconds": self.train_seconds,
            "total_steps": self.total_steps,
            "eval_every": self.eval_every,
            "best": self.best,
            "config": self.cfg.to_dict(),
        }
        path = folder / f"step-{self.step:08d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        for old in self.checkpoints()[: -max(1, self.cfg.keep_checkpoints)]:
            old.unlink()
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.idf is not None and state["idf"] is not None:
            with torch.no_grad():
                self.idf.copy_(state["idf"].to(self.device))
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.cfg.optim.fit_budget:  # a budget-fitted run resumes on the schedule it set
            self.total_steps = int(state.get("total_steps", self.total_steps))
            self.eval_every = int(state.get("eval_every", self.eval_every))
        self.best = state.get("best")
        self.score_scale = float(state.get("score_scale", self.score_scale))
        logger.info("resumed from %s at step %d", path, self.step)

    # -- the run --------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def train(self, *, stop_at_step: int | None = None) -> dict[str, Any]:
        """Run to the end (epochs / max_steps), the time budget, or stop_at_step; evaluate,
        checkpoint and export. stop_at_step interrupts without changing the LR schedule."""
        cfg, o = self.cfg, self.cfg.optim
        t_start = time.monotonic()
        budget = o.max_minutes * 60 if o.max_minutes else math.inf
        end = self.total_steps if stop_at_step is None else min(stop_at_step, self.total_steps)
        if self.step == 0 and cfg.eval.at_start and not self.history:
            self.evaluate("start")
        bar = None
        if self.show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        stopped = "completed" if end == self.total_steps else "stop_at_step"
        step_s: list[float] = []
        while self.step < end:
            t0 = time.monotonic()
            stats = self.train_step()
            step_s.append(time.monotonic() - t0)
            self.train_seconds += step_s[-1]
            if o.fit_budget and len(step_s) == FIT_AFTER_STEPS and math.isfinite(budget):
                self._fit_budget(budget - (time.monotonic() - t_start), step_s)
                if stop_at_step is None:
                    end = self.total_steps
                if bar is not None:
                    bar.total = self.total_steps
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{stats['loss']:.3f}",
                    flops=f"{stats['flops_d']:.2f}",
                    nnz_d=f"{stats['nnz_d']:.0f}",
                    **({} if self.inference_free else {"nnz_q": f"{stats['nnz_q']:.0f}"}),
                )
            if self.step % cfg.log_every == 0 or self.step == end:
                self._log({"event": "step", "step": self.step, "step_s": step_s[-1], **stats})
            if self.step < self.total_steps:
                epoch, within = divmod(self.step, self.steps_per_epoch)
                every = cfg.eval.every_epochs
                if within == 0 and every and epoch % every == 0:
                    self.evaluate(f"epoch {epoch}")
                elif self.eval_every and self.step % self.eval_every == 0:
                    self.evaluate(f"step {self.step}")
                if cfg.eval.patience and self._evals_since_best() >= cfg.eval.patience:
                    stopped = "early_stopping"
                    break
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            # Stop while the final evaluation and the export still fit in the budget.
            reserve = (self.history[-1]["eval_s"] if self.history else 0.0) + 30.0
            elapsed = time.monotonic() - t_start
            if self.step < end and elapsed + np.mean(step_s[-5:]) + reserve > budget:
                stopped = "max_minutes"
                break
        if bar is not None:
            bar.close()
        evaluated = bool(self.history) and self.history[-1]["step"] == self.step
        if stopped != "stop_at_step" and not evaluated:
            self.evaluate("final")
        self.save_checkpoint()
        report = self.report(stopped, time.monotonic() - t_start, step_s)
        if stopped != "stop_at_step" and self.best is not None:
            # Selection by held-out nDCG@10 (labels or teacher agreement, as configured).
            self._load_model_state(self.best["state"])
            report["selected"] = self.best["record"]
        if stopped != "stop_at_step":
            self.export(self.out / MODEL_DIR)
        (self.out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))
        return report

    def _fit_budget(self, seconds_left: float, step_s: list[float]) -> None:
        """Set total_steps (and the evaluation interval) to what the time left allows.

        The first step pays one-off costs, so the rate comes from the steps after it; every
        evaluation still to come costs what the last one did, and the export ~30 s."""
        per_step = float(np.mean(step_s[1:])) if len(step_s) > 1 else step_s[0]
        eval_s = self.history[-1]["eval_s"] if self.history else 0.0
        evals = max(1, self.cfg.eval.evals)
        steps = int((seconds_left - evals * eval_s - 30.0) / max(per_step, 1e-6))
        self.total_steps = min(self.total_steps, self.step + max(1, steps))
        if self.cfg.eval.evals:
            self.eval_every = max(1, self.total_steps // self.cfg.eval.evals)
        logger.info(
            "budget: %.1f s/step, %.0f s per evaluation -> %d steps, evaluating every %d",
            per_step, eval_s, self.total_steps, self.eval_every,
        )  # fmt: skip

    def report(self, stopped: str, wall_s: float, step_s: list[float]) -> dict[str, Any]:
        return {
            "stopped": stopped,
            "steps": self.step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs_done": round(self.step / self.steps_per_epoch, 3),
            "wall_s": round(wall_s, 1),
            "train_s": round(self.train_seconds, 1),
            "s_per_step": round(float(np.mean(step_s)), 3) if step_s else None,
            "steps_per_s": round(1 / float(np.mean(step_s)), 4) if step_s else None,
            "train_queries": int(self.data.train.size),
            "heldout_queries": int(self.data.heldout.size),
            "score_scale": round(self.score_scale, 4),
            "eval": self.history,
            "model_dir": str(self.out / MODEL_DIR),
            "config": self.cfg.to_dict(),
        }

    def export(self, folder: Path) -> Path:
        self.sync_encoder()
        last = self.best["record"] if self.best else self.history[-1] if self.history else {}
        info = {
            "base_model": self.cfg.model,
            "trained_steps": last.get("step", self.step),
            "heldout": {
                k: last.get(k) for k in ("ndcg@10", "nnz_per_doc", "nnz_per_query", "flops")
            },
            "heldout_target": self.cfg.eval.target,
            "query_weights": self.cfg.loss.query_weights if self.inference_free else None,
        }
        return export_model(
            self.encoder,
            folder,
            activation=self.cfg.loss.activation,
            info=info,
            st_layout=self.cfg.sentence_transformers_layout,
        )


def train_from_config(cfg: TrainConfig, *, show_progress: bool = True) -> dict[str, Any]:
    return Trainer(cfg, show_progress=show_progress).train()
