"""CPU document-encoding throughput: our SpladeEncoder vs a naive per-document HF loop.

Why: indexing cost on CPU is set by the encoder, and ours claims its batching (length-sorted
batches, per-batch padding, the vocabulary projection on real tokens only) pays off. This checks
the speed-up against the obvious loop on the same documents and threads, that the vectors stay
the same (max abs difference), and where our fp32 time goes (transformer body vs projection).

    .venv/bin/python -m benchmarks.encode_throughput [--n 512] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import (
    DEFAULT_DATA,
    RESULTS_DIR,
    machine_info,
    markdown,
    pinned_threads,
    versions,
    write_json,
)

EncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> dense [n, vocab] float32


def load_texts(data: Path, n: int) -> list[str]:
    """The first n documents of the corpus as the encoders see them (title + text)."""
    from sparseretr.corpus import doc_text, iter_corpus

    texts = []
    for doc in iter_corpus(data):
        if len(texts) >= n:
            break
        texts.append(doc_text(doc))
    if not texts:
        raise ValueError(f"no documents in {data}")
    return texts


def naive_engine(model_ref: str, max_length: int) -> EncodeFn:
    """The textbook loop: one document at a time, logits for every token, then max-pool."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparseretr.models import resolve_model

    path = resolve_model(model_ref)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    vocab = int(model.config.vocab_size)

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), vocab), dtype=np.float32)
        with torch.no_grad():
            for i, text in enumerate(texts):
                enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
                logits = model(**enc).logits[0]
                out[i] = torch.log1p(torch.relu(logits)).amax(0).numpy()
        return out

    return encode


def ours_engine(encoder: Any) -> EncodeFn:
    """SpladeEncoder.encode_documents, densified after the clock stops."""

    def encode(texts: Sequence[str]) -> Any:
        return encoder.encode_documents(list(texts))

    return encode


def to_dense(result: Any) -> np.ndarray:
    return result if isinstance(result, np.ndarray) else result.to_scipy().toarray()


class Breakdown:
    """Where our fp32 time goes, from forward hooks (no copy of the encoder's code).

    body = the transformer (model.base_model); projection = the MLM head's tiled projection with
    its per-tile max-pool (SpladeEncoder._tiled_max; the whole head on heads it cannot split);
    pool = the rest of forward() (padding, log1p/relu); other = tokenizing,
    length sorting and sparsifying (encode_documents minus forward). The hooks stay on during
    the timed runs (a few clock reads per batch), so the split describes those very runs.
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.acc = dict.fromkeys(("body", "projection", "forward"), 0.0)
        self._starts: dict[str, float] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Breakdown:
        for name, module in (
            ("body", self.encoder.model.base_model),
            ("projection", self.encoder.head),
        ):
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        self._wrap("forward", "forward")
        self._wrap("_tiled_max", "projection")
        return self

    def _wrap(self, method: str, slot: str) -> None:
        """Time calls of the encoder's `method` into acc[slot] (an instance attribute that
        __exit__ deletes, so the class method shows again)."""
        clock = time.perf_counter
        original = getattr(self.encoder, method)

        def timed(*args: Any) -> Any:
            t0 = clock()
            try:
                return original(*args)
            finally:
                self.acc[slot] += clock() - t0

        setattr(self.encoder, method, timed)

    def __exit__(self, *_: object) -> None:
        del self.encoder.forward  # drop the instance attributes: the class methods show again
        del self.encoder._tiled_max
        for h in self._handles:
            h.remove()

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self._starts[name] = time.perf_counter()

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            self.acc[name] += time.perf_counter() - self._starts[name]

        return hook

    def reset(self) -> None:
        self.acc = dict.fromkeys(self.acc, 0.0)

    def report(self, total: float) -> dict[str, float]:
        a = self.acc
        parts = {
            "body_s": a["body"],
            "projection_s": a["projection"],
            "pool_s": a["forward"] - a["body"] - a["projection"],
            "other_s": total - a["forward"],
        }
        shares = {k.replace("_s", "_share"): v / total for k, v in parts.items()}
        return {"total_s": total, **parts, **shares}


def time_interleaved(
    engines: dict[str, EncodeFn], texts: Sequence[str], chunk: int, repeat: int, seed: int = 0
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Seconds per repeat per engine, and each engine's dense vectors from the last repeat.

    The documents go through in chunks; each chunk runs on every engine back to back in a random
    order, so load drift on a shared machine hits all engines alike.
    """
    names = list(engines)
    rng = np.random.default_rng(seed)
    seconds = {n: [0.0] * repeat for n in names}
    outputs: dict[str, list[np.ndarray]] = {}
    for r in range(repeat):
        outputs = {n: [] for n in names}
        for a in range(0, len(texts), chunk):
            part = texts[a : a + chunk]
            for e in rng.permutation(len(names)).tolist():
                t0 = time.perf_counter()
                out = engines[names[e]](part)
                seconds[names[e]][r] += time.perf_counter() - t0
                outputs[names[e]].append(to_dense(out))
    return seconds, {n: np.vstack(v) for n, v in outputs.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.encode_throughput",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder or corpus JSONL")
    p.add_argument("--n", type=int, default=512, help="documents to encode")
    p.add_argument("--threads", type=int, default=cores or 1, help="torch threads (all engines)")
    p.add_argument("--model", default="splade-tiny", help="SPLADE model folder or name")
    p.add_argument("--batch-size", type=int, default=32, help="our encoder's batch size")
    p.add_argument("--max-length", type=int, default=512, help="document max tokens")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per engine (median kept)")
    p.add_argument(
        "--chunk",
        type=int,
        default=128,
        help="documents per interleaving step (our encoder sorts by length within a chunk)",
    )
    p.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 autocast run")
    p.add_argument(
        "--dense", default=None, help="also time this dense model (the index's other encoder, "
        "e.g. all-MiniLM-L6-v2) in fp32 and bf16 on the same texts",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help=f"JSON folder (default {RESULTS_DIR})")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with pinned_threads(args.threads) as threads:
        return _run(args, threads)


def _run(args: argparse.Namespace, threads: dict[str, Any]) -> dict[str, Any]:
    from sparseretr.encoders import SpladeEncoder

    texts = load_texts(args.data, args.n)
    opts = {"max_length": args.max_length, "batch_size": args.batch_size, "device": "cpu"}
    fp32 = SpladeEncoder(args.model, dtype="float32", **opts)
    engines: dict[str, EncodeFn] = {
        "naive-hf": naive_engine(args.model, args.max_length),
        "ours-fp32": ours_engine(fp32),
    }
    if not args.no_bf16:
        engines["ours-bf16"] = ours_engine(SpladeEncoder(args.model, dtype="bfloat16", **opts))

    warm = texts[: min(8, len(texts))]
    for fn in engines.values():
        fn(warm)
    names = list(engines)
    with Breakdown(fp32) as split:
        split.reset()
        seconds, outputs = time_interleaved(engines, texts, max(1, args.chunk), args.repeat)
        breakdown_fp32 = split.report(sum(seconds["ours-fp32"]))

    ref = outputs["naive-hf"]
    n_tokens = [len(x) for x in fp32.token_ids(texts, args.max_length, special=True)]
    results: dict[str, dict[str, Any]] = {}
    base = len(texts) / float(np.median(seconds["naive-hf"]))
    for name in names:
        dps = len(texts) / float(np.median(seconds[name]))
        dense = outputs[name]
        diff = np.abs(dense - ref)
        results[name] = {
            "docs_per_s": dps,
            "tokens_per_s": sum(n_tokens) / float(np.median(seconds[name])),
            "seconds": seconds[name],
            "ratio_vs_naive": dps / base,
            "max_abs_diff_vs_naive": float(diff.max()),
            "mean_abs_diff_vs_naive": float(diff.mean()),
            "max_rel_diff_vs_naive": float(diff.max() / max(float(ref.max()), 1e-12)),
            "nnz_per_doc": float((dense > 0).sum() / len(texts)),
        }
    record: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_limit": cpu_limit(
            fp32, float(np.mean(n_tokens)), results["ours-fp32"], breakdown_fp32
        ),
        "docs": {
            "n": len(texts),
            "mean_tokens": float(np.mean(n_tokens)),
            "max_tokens": int(max(n_tokens)),
            "truncated": int(sum(t >= args.max_length for t in n_tokens)),
        },
        "threads": threads,
        "results": results,
        "breakdown_fp32": breakdown_fp32,
        "machine": {**machine_info(), "cpu_flags_bf16": _bf16_flags()},
        "versions": versions(),
    }
    if args.dense:
        record["dense"] = dense_rates(args.dense, texts, args.repeat, not args.no_bf16)
    path = write_json(record, "encode_throughput", args.out)
    print(render(record))
    print(f"\nJSON: {path}")
    return record


def dense_rates(model: str, texts: list[str], repeat: int, bf16: bool) -> dict[str, Any]:
    """docs/s of the dense side (an index build runs it after the sparse encoder on every
    shard, so the two rates bound the job together), and bf16's smallest cosine with fp32."""
    from sparseretr.dense import DenseEncoder

    out: dict[str, Any] = {"model": model}
    ref = None
    for dtype in ("float32", "bfloat16") if bf16 else ("float32",):
        enc = DenseEncoder(model, dtype=dtype, device="cpu")
        enc.encode(texts[: min(8, len(texts))])
        runs = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            vecs = enc.encode(texts)
            runs.append(time.perf_counter() - t0)
        out[f"{dtype}_docs_per_s"] = len(texts) / float(np.median(runs))
        if ref is None:
            ref = vecs
        else:
            out[f"{dtype}_min_cosine_vs_float32"] = float((ref * vecs).sum(axis=1).min())
    return out


def gemm_rate(width: int, repeat: int = 30) -> float:
    """fp32 FLOP/s of one projection tile ([tokens, width] x [width, vocab entries], the
    encoder's CPU tile shape) on the threads torch has now: the rate the projection can reach."""
    import torch

    from sparseretr.encoders.splade import CPU_TILES

    tokens, vocab = CPU_TILES
    x, w = torch.randn(tokens, width), torch.randn(width, vocab)
    for _ in range(3):
        x @ w
    t0 = time.perf_counter()
    for _ in range(repeat):
        x @ w
    return 2.0 * tokens * width * vocab * repeat / (time.perf_counter() - t0)


def cpu_limit(
    encoder: Any, mean_tokens: float, ours: dict[str, Any], split: dict[str, float]
) -> dict[str, float]:
    """The projection's FLOPs per document over this CPU's measured GEMM rate: the docs/s the
    projection alone could reach, against what ours reaches in its projection time."""
    assert encoder.split is not None
    width = int(encoder.split[1].in_features)
    flops = 2.0 * mean_tokens * width * encoder.vocab_size
    rate = gemm_rate(width)
    bound = rate / flops
    projection_dps = ours["docs_per_s"] / max(split["projection_share"], 1e-12)
    return {
        "projection_gflop_per_doc": flops / 1e9,
        "gemm_gflop_per_s": rate / 1e9,
        "projection_bound_docs_per_s": bound,
        "projection_docs_per_s": projection_dps,
        "projection_share_of_bound": projection_dps / bound,
    }


def _bf16_flags() -> list[str]:
    """CPU flags that give bf16 matmuls hardware support (without them bf16 is emulated)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def render(record: dict[str, Any]) -> str:
    rows = [
        [
            name,
            r["docs_per_s"],
            r["ratio_vs_naive"],
            f"{r['max_abs_diff_vs_naive']:.2e}",
            f"{r['mean_abs_diff_vs_naive']:.2e}",
        ]
        for name, r in record["results"].items()
    ]
    table = markdown(
        ["engine", "docs/s", "× naive", "max abs diff vs naive", "mean abs diff vs naive"], rows
    )
    b, d, c = record["breakdown_fp32"], record["docs"], record["cpu_limit"]
    return (
        f"{table}\n\n{d['n']} docs, {d['mean_tokens']:.0f} tokens/doc on average "
        f"({d['truncated']} truncated); torch threads {record['threads'].get('torch')}; "
        f"load avg {record['machine']['loadavg']}.\n"
        f"ours-fp32 time: body {b['body_share']:.0%}, MLM projection {b['projection_share']:.0%}, "
        f"pool/activation {b['pool_share']:.0%}, tokenize+sparsify {b['other_share']:.0%} "
        f"(of {b['total_s']:.2f}s).\n"
        f"CPU limit: the projection is {c['projection_gflop_per_doc']:.2f} GFLOP per document and "
        f"this CPU multiplies a projection tile at {c['gemm_gflop_per_s']:.0f} GFLOP/s (fp32), so "
        f"the projection alone is bounded at {c['projection_bound_docs_per_s']:.1f} docs/s; ours "
        f"runs it at {c['projection_docs_per_s']:.1f} docs/s "
        f"({c['projection_share_of_bound']:.0%} of the bound)."
    ) + (_render_dense(record["dense"]) if "dense" in record else "")


def _render_dense(d: dict[str, Any]) -> str:
    parts = [f"fp32 {d['float32_docs_per_s']:.1f} docs/s"]
    if "bfloat16_docs_per_s" in d:
        parts.append(
            f"bf16 {d['bfloat16_docs_per_s']:.1f} docs/s (min cosine with fp32 "
            f"{d['bfloat16_min_cosine_vs_float32']:.5f})"
        )
    return f"\nDense side ({d['model']}, max length 256): " + ", ".join(parts) + "."


if __name__ == "__main__":
    main()
