"""`sparseretr` command line: index build / info, search, eval beir, train, serve."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sparseretr.index.errors import UserInputError

DEFAULT_DATA = "../shared/data/beir/scifact"


def _add_encoder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder")
    g.add_argument(
        "--encoder",
        choices=["splade", "inference-free", "bm25"],
        help="siamese SPLADE, inference-free SPLADE (IDF queries) or BM25 impacts (default: "
        "what the --model folder is for, see encoders.detect_kind; splade-tiny: splade)",
    )
    g.add_argument("--model", help="model folder, Hugging Face id, or 'splade-tiny' (default)")
    g.add_argument("--max-length", type=int, help="document max tokens (default 512)")
    g.add_argument("--batch-size", type=int, help="documents per encoder batch (default 32)")
    g.add_argument("--doc-top-k", type=int, help="keep only each document's top-k terms")
    g.add_argument("--threshold", type=float, help="drop document weights at or below this")
    g.add_argument(
        "--lexical-weight", type=float,
        help="inference-free: add BM25's term-frequency saturation over word pieces x this "
        "to each document (encoders/lexical.py); 0: none (default: the --model folder's)",
    )  # fmt: skip
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: GPU when present)")
    g.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="autocast dtype (default auto: an index build encodes documents in bf16 where "
        "the hardware computes it natively, GPUs and AVX512-BF16/AMX CPUs, else fp32; "
        "queries: bf16/fp16 on GPU, fp32 on CPU)",
    )


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    from sparseretr.batch import DEFAULT_SHARD_SIZE

    g = p.add_argument_group(
        "batch job (encoded shards go to OUT.work/; a killed build resumes where it stopped)"
    )
    g.add_argument(
        "--shard-size",
        type=int,
        help="documents per shard, the unit of resume and of work (default: equal shards of "
        f"at most {DEFAULT_SHARD_SIZE}, as many as a multiple of the workers)",
    )
    g.add_argument(
        "--workers",
        type=int,
        help="encoder workers (default: one per core, at most one per pending shard; "
        "one per GPU when GPUs are present; Ray: the cluster's CPUs or GPUs)",
    )
    g.add_argument("--keep-work", action="store_true", help="keep OUT.work/ after the build")
    g.add_argument(
        "--ray",
        action="store_true",
        help="encode on Ray Data actors (pip install 'sparseretr[ray]')",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join ('auto', host:port, ray://...; default: start a local one)",
    )


def _add_fusion_args(p: argparse.ArgumentParser) -> None:
    from sparseretr.fusion import DEFAULTS

    g = p.add_argument_group("hybrid fusion (defaults tuned on SciFact train)")
    g.add_argument(
        "--alpha", type=float, default=DEFAULTS["alpha"], help="convex: weight of the sparse side"
    )
    g.add_argument("--rrf-k", type=int, default=DEFAULTS["rrf_k"], help="RRF rank constant")
    g.add_argument(
        "--normalization",
        choices=["minmax", "zscore"],
        default=DEFAULTS["normalization"],
        help="convex: per-query score normalization",
    )
    g.add_argument(
        "--candidates", type=int, default=DEFAULTS["candidates"], help="top-N of each side fused"
    )
    g.add_argument(
        "--bm25-weight",
        type=float,
        default=None,
        help="the BM25 side's share of the hybrid (sparse and dense share the rest; default "
        f"{DEFAULTS['bm25_weight']} where the index has a BM25 side, else 0)",
    )


def _check_encoder_args(a: argparse.Namespace) -> None:
    """Refuse model options that the chosen encoder would silently ignore."""
    if getattr(a, "lexical_weight", None) is not None:
        from sparseretr.encoders import detect_kind

        if (a.encoder or detect_kind(a.model)) != "inference-free":
            raise UserInputError("--lexical-weight is for --encoder inference-free only")
    if a.encoder != "bm25":
        return
    model_options = {
        "--model": a.model, "--max-length": a.max_length, "--doc-top-k": a.doc_top_k,
        "--threshold": a.threshold, "--device": a.device, "--dtype": a.dtype,
    }  # fmt: skip
    given = [flag for flag, v in model_options.items() if v is not None]
    if given:
        raise UserInputError(
            f"--encoder bm25 has no model: {', '.join(given)} would be ignored; drop "
            f"{'it' if len(given) == 1 else 'them'} or choose --encoder splade|inference-free"
        )


def _add_knob_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("query-time pruning (sparse and bm25 sides; 1 and 1: exact top-k)")
    g.add_argument(
        "--prune-alpha", type=float, default=1.0,
        help="< 1 stops once no block can beat alpha x the k-th score (approximate)",
    )  # fmt: skip
    g.add_argument(
        "--term-fraction", type=float, default=1.0,
        help="< 1 scores only the heaviest query terms carrying that share of its weight",
    )  # fmt: skip


def _encoder_from_args(a: argparse.Namespace):
    from sparseretr.encoders import create_encoder, detect_kind

    if a.encoder is None:
        a.encoder = detect_kind(a.model)
    _check_encoder_args(a)
    if a.encoder == "bm25":
        return create_encoder("bm25")
    return create_encoder(
        a.encoder,
        model=a.model,
        max_length=a.max_length,
        batch_size=a.batch_size,
        top_k=a.doc_top_k,
        threshold=a.threshold,
        device=a.device,
        dtype=a.dtype,
        **_lexical_option(a),
    )


def _lexical_option(a: argparse.Namespace) -> dict:
    """--lexical-weight as the encoder's `lexical` option (absent: the model folder decides)."""
    from sparseretr.encoders.lexical import LexicalPrior

    w = getattr(a, "lexical_weight", None)
    if w is None:
        return {}
    return {"lexical": LexicalPrior(w) if w > 0 else {}}


def cmd_index_build(a: argparse.Namespace) -> int:
    from sparseretr.batch import BatchOptions, build_batch, work_dir_for
    from sparseretr.corpus import corpus_file

    _check_encoder_args(a)
    if not 1 <= a.segments <= 8:
        raise UserInputError(f"--segments must be 1..8, got {a.segments}")
    if a.vectors:
        return _index_from_vectors(a)
    if not a.corpus:
        raise UserInputError("index build needs --corpus (or --vectors)")
    corpus_file(a.corpus)  # fail on a wrong path before loading any model
    out = Path(a.out)
    # An existing output is refused now, before loading a model, unless a work folder beside
    # it may say that this same job published it and was killed before cleaning up.
    if out.exists() and not a.overwrite and not work_dir_for(out).is_dir():
        raise FileExistsError(f"{a.out} already exists; pass --overwrite to replace it")
    if a.ray:
        from sparseretr.batch.ray_runner import require_ray

        require_ray()  # fail before encoding anything
    options = BatchOptions(
        shard_size=a.shard_size,
        workers=a.workers,
        ray=a.ray,
        ray_address=a.ray_address,
        keep_work=a.keep_work,
        dense_model=a.dense,
        with_bm25=a.with_bm25,
        limit=a.limit,
        batch_size=a.batch_size,
        device=a.device,
        dtype=a.dtype,
        overwrite=a.overwrite,
        show_progress=not a.quiet,
    )
    summary = build_batch(a.corpus, a.out, _encoder_from_args(a), options).as_dict()
    if a.segments > 1:
        from sparseretr.indexing import split_index

        summary["segments"] = split_index(a.out, a.segments)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_index_split(a: argparse.Namespace) -> int:
    from sparseretr.indexing import split_index

    parts = split_index(a.index, a.segments)
    print(json.dumps({"index": str(a.index), "segments": parts}, indent=2))
    return 0


def _index_from_vectors(a: argparse.Namespace) -> int:
    from sparseretr.vector_files import build_from_vectors, detect

    if a.corpus:
        raise UserInputError("pass --corpus or --vectors, not both (vectors files carry the texts)")
    unsupported = [f for f, v in (("--ray", a.ray), ("--limit", a.limit)) if v]
    if unsupported:
        raise UserInputError(f"--vectors builds in one step: {', '.join(unsupported)} do not apply")
    detect(Path(a.vectors))  # a wrong path or format fails before any model loads
    summary = build_from_vectors(
        a.vectors, a.out, _encoder_from_args(a), dense_model=a.dense, with_bm25=a.with_bm25,
        overwrite=a.overwrite,
    )  # fmt: skip
    if a.segments > 1:
        from sparseretr.indexing import split_index

        summary["segments"] = split_index(a.out, a.segments)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from sparseretr.vector_files import export_index

    meta = export_index(a.index, a.out, a.format, index_name=a.index_name)
    print(json.dumps(meta, indent=2))
    return 0


def cmd_index_info(a: argparse.Namespace) -> int:
    from sparseretr.index import SparseIndex
    from sparseretr.index.segments import SEGMENTS_DIR, is_segmented, read_commit

    if is_segmented(a.index):
        commit = read_commit(Path(a.index))
        for seg in commit["segments"]:  # opening checks each one (and sha256 with --verify)
            idx = SparseIndex.open(Path(a.index) / SEGMENTS_DIR / seg["name"], verify=a.verify)
            seg["manifest"] = idx.manifest
            idx.close()
        print(json.dumps(commit, indent=2))
    else:
        idx = SparseIndex.open(a.index, verify=a.verify)
        print(json.dumps(idx.manifest, indent=2))
    if a.verify:
        print("checksums: ok", file=sys.stderr)
    return 0


def cmd_index_upgrade(a: argparse.Namespace) -> int:
    from sparseretr.index.upgrade import upgrade

    path = upgrade(a.index, a.out)
    print(f"upgraded: {path}")
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    from sparseretr.engine import Engine

    query = " ".join(a.query).strip()
    if not query:
        raise UserInputError("the query is empty")
    engine = Engine.open(
        a.index, dense=a.mode in ("dense", "hybrid"), bm25=a.mode in ("bm25", "hybrid")
    )
    try:
        (res,) = engine.search(
            [query],
            k=a.k,
            mode=a.mode,
            explain=a.explain,
            prune_alpha=a.prune_alpha,
            term_fraction=a.term_fraction,
        )
        out = []
        for rank, h in enumerate(res.hits, 1):
            doc = engine.docstore.get(h.id) or {}
            row = {"rank": rank, "id": h.id, "score": round(h.score, 4)}
            row["title"] = doc.get("title", "")
            if a.explain and res.explain is not None:
                row["matched"] = res.explain[h.id][:10]
            out.append(row)
    finally:
        engine.close()
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out:
            print(f"{r['rank']:>3}  {r['score']:>9.4f}  {r['id']:<12} {r['title'][:80]}")
            for m in r.get("matched", []):
                print(f"{'':>16}{m['token']:<16} q={m['query_weight']:.3f} d={m['doc_weight']:.3f}")
    return 0


def cmd_eval_beir(a: argparse.Namespace) -> int:
    from sparseretr.eval.beir_eval import evaluate_beir
    from sparseretr.eval.sweep import GRID

    report = evaluate_beir(
        a.data,
        split=a.split,
        indexes=a.index,
        baselines=a.baseline,
        k=a.k,
        out_dir=a.out,
        timing=a.timing,
        check_exact=a.check_exact,
        modes=a.mode or ["sparse"],
        fusions=a.fusion or ["rrf"],
        fusion_options={
            "alpha": a.alpha,
            "rrf_k": a.rrf_k,
            "normalization": a.normalization,
            "candidates": a.candidates,
            "bm25_weight": a.bm25_weight,
        },
        knobs={"prune_alpha": a.prune_alpha, "term_fraction": a.term_fraction},
        sweep=GRID if a.sweep else (),
    )
    print(report.markdown)
    print("\nreports: " + "\n         ".join(str(f) for f in report.files or []), file=sys.stderr)
    return 0


def cmd_tune_fusion(a: argparse.Namespace) -> int:
    from sparseretr.eval.tune_fusion import tune_fusion

    report = tune_fusion(a.data, a.index, split=a.split, candidates=a.candidates, out=a.out)
    for g in report["grid"]:
        opts = ", ".join(f"{k}={v}" for k, v in g.items() if k != "ndcg@10")
        print(f"{g['ndcg@10']:.4f}  {opts}")
    print("best:", json.dumps(report["best"]))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    import logging

    from sparseretr.training import load_config, train_from_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("beir").setLevel(logging.WARNING)  # it logs whole example documents
    overrides = list(a.set or [])
    if a.output:
        overrides.append(f"output_dir={a.output}")
    if a.max_minutes is not None:
        overrides.append(f"optim.max_minutes={a.max_minutes}")
    if a.no_resume:
        overrides.append("resume=false")
    report = train_from_config(load_config(a.config, overrides), show_progress=not a.quiet)
    summary = {k: v for k, v in report.items() if k != "config"}
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_adapt(a: argparse.Namespace) -> int:
    import logging

    from sparseretr.adapt import AdaptOptions, adapt

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = adapt(
        AdaptOptions(
            corpus=a.corpus,
            out=a.out,
            model=a.model,
            dense=a.dense,
            minutes=a.minutes,
            generator=a.generator,
            n_queries=a.queries,
            seed=a.seed,
            index=a.index,
            device=a.device,
            resume=not a.no_resume,
            show_progress=not a.quiet,
            overrides=list(a.set or []),
        )
    )
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2, default=str))
    return 0


def _add_adapt_parser(sub: argparse._SubParsersAction) -> None:
    from sparseretr.adapt import GENERATORS
    from sparseretr.models import DEFAULT_DENSE, DEFAULT_SPLADE

    t = sub.add_parser(
        "adapt",
        help="adapt an inference-free model to a corpus with no labels (pseudo-queries + "
        "teacher ensemble distillation)",
    )
    t.add_argument("--corpus", required=True, help="corpus.jsonl(.gz) or a folder holding it")
    t.add_argument("--out", required=True, help="run folder: model/, checkpoints, report")
    t.add_argument(
        "--minutes", type=float, default=30.0,
        help="training time budget in minutes (default 30; encoding the teachers' corpus "
        "vectors comes on top, once)",
    )  # fmt: skip
    t.add_argument("--index", action="store_true", help="also build OUT/index (dense + BM25 sides)")
    t.add_argument(
        "--model", default=DEFAULT_SPLADE, help="starting document model (default %(default)s)"
    )
    t.add_argument(
        "--dense", default=DEFAULT_DENSE,
        help="dense teacher and the index's dense side (default %(default)s; all-mpnet-base-v2 "
        "with the [mpnet] extra: stronger on NFCorpus, not SciFact; ~8x the encoding cost)",
    )  # fmt: skip
    t.add_argument(
        "--generator", default="mix",
        help=f"pseudo-query source: one of {', '.join(GENERATORS)}, or kinds joined by '+' "
        "(mix = title+sentence)",
    )  # fmt: skip
    t.add_argument("--queries", type=int, default=4000, help="pseudo-queries to train on")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, ... (default: GPU when present)")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override any training-config key, e.g. --set loss.flops_doc=0.01 (repeatable)",
    )  # fmt: skip
    t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_adapt)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train an inference-free or siamese SPLADE model")
    t.add_argument("--config", required=True, help="training config (YAML or TOML)")
    t.add_argument("--output", help="override output_dir")
    t.add_argument("--max-minutes", type=float, help="override optim.max_minutes")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=1e-4 (repeatable)",
    )
    t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparseretr", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", help="build or inspect an index").add_subparsers(
        dest="index_command", required=True
    )
    b = ix.add_parser("build", help="encode a corpus and write an index folder")
    b.add_argument("--corpus", help="corpus JSONL(.gz) or a BEIR dataset folder")
    b.add_argument(
        "--vectors", metavar="FILE",
        help="index precomputed vectors instead of encoding: an Anserini JsonVectorCollection "
        "(.jsonl or a folder of them) or an OpenSearch bulk NDJSON file, token-keyed; --encoder "
        "and --model name the vocabulary and the query side",
    )  # fmt: skip
    b.add_argument("--out", required=True, help="index folder to create")
    b.add_argument("--limit", type=int, help="index only the first N documents")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument(
        "--dense",
        nargs="?",
        const="all-MiniLM-L6-v2",
        metavar="MODEL",
        help="also build a dense index (default model all-MiniLM-L6-v2) for hybrid",
    )
    b.add_argument("--with-bm25", action="store_true", help="also build a BM25 index (mode bm25)")
    b.add_argument(
        "--segments", type=int, default=1,
        help="write the index as this many equal segments (1-8): one per shard of `serve --shards`",
    )  # fmt: skip
    _add_batch_args(b)
    _add_encoder_args(b)
    b.set_defaults(func=cmd_index_build)
    i = ix.add_parser("info", help="print an index manifest")
    i.add_argument("index")
    i.add_argument("--verify", action="store_true", help="also check every file's sha256")
    i.set_defaults(func=cmd_index_info)
    sp = ix.add_parser(
        "split", help="rewrite an index as N segments of equal size (the units of sharded serving)"
    )
    sp.add_argument("index")
    sp.add_argument("--segments", type=int, required=True, help="how many (1-8)")
    sp.set_defaults(func=cmd_index_split)
    u = ix.add_parser("upgrade", help="rewrite an older-format index in the current format")
    u.add_argument("index")
    u.add_argument("--out", help="write here instead of replacing the index in place")
    u.set_defaults(func=cmd_index_upgrade)

    s = sub.add_parser("search", help="search an index from the command line")
    s.add_argument("--index", required=True)
    s.add_argument("query", nargs="+")
    s.add_argument("-k", type=int, default=10)
    s.add_argument(
        "--mode", default="sparse", choices=["sparse", "dense", "hybrid", "bm25"],
        help="which side(s) to search (dense and hybrid load the dense model)",
    )  # fmt: skip
    s.add_argument("--explain", action="store_true", help="show matched tokens and weights")
    s.add_argument("--json", action="store_true")
    _add_knob_args(s)
    s.set_defaults(func=cmd_search)

    ev = sub.add_parser("eval", help="evaluate").add_subparsers(dest="eval_command", required=True)
    e = ev.add_parser("beir", help="evaluate indexes on a BEIR dataset (folder or name)")
    e.add_argument(
        "data", nargs="+",
        help="BEIR folder(s), or dataset names to download (online only); several make one "
        "table (a row per system, a column per dataset plus the mean)",
    )  # fmt: skip
    e.add_argument(
        "--index", action="append", default=[], metavar="[LABEL=]PATH",
        help="index folder (repeatable); {dataset} in PATH stands for each dataset's name, "
        "LABEL names the system's row",
    )  # fmt: skip
    e.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=["bm25", "bm25-multifield"],
        help="add pyserini BM25 flat or multifield (k1=0.9, b=0.4); needs the [bm25] extra "
        "and Java",
    )
    e.add_argument("--split", default="test")
    e.add_argument(
        "-k",
        type=int,
        default=1000,
        help="hits retrieved per query; a hybrid fuses max(--candidates, k) per side, so -k "
        "100 scores the fusion the service serves for k <= 100",
    )
    e.add_argument("--out", default="runs", help="folder for the JSON and Markdown report")
    e.add_argument(
        "--timing",
        choices=["single", "batch"],
        default="single",
        help="single: per-query latency percentiles; batch: throughput only",
    )
    e.add_argument(
        "--check-exact",
        action="store_true",
        help="also check the top-10 of every query against brute force",
    )
    e.add_argument(
        "--mode",
        action="append",
        choices=["sparse", "dense", "hybrid", "bm25"],
        help="search mode(s) to evaluate on each index (repeatable; default sparse)",
    )
    e.add_argument(
        "--fusion",
        action="append",
        choices=["rrf", "convex"],
        help="fusion(s) for hybrid mode (repeatable; default rrf)",
    )
    _add_fusion_args(e)
    _add_knob_args(e)
    e.add_argument(
        "--sweep", action="store_true",
        help="also run each index's sparse mode over a grid of --prune-alpha x --term-fraction: "
        "<dataset>-<split>/sweep.{md,json,png}, nDCG@10 against p50 latency",
    )  # fmt: skip
    e.set_defaults(func=cmd_eval_beir)
    t = ev.add_parser("tune-fusion", help="grid-search hybrid fusion settings on a train split")
    t.add_argument("data", help="BEIR folder or dataset name")
    t.add_argument("--index", required=True, help="index folder with a dense/ side")
    t.add_argument("--split", default="train")
    t.add_argument("--candidates", type=int, default=100)
    t.add_argument("--out", help="write the grid as JSON here")
    t.set_defaults(func=cmd_tune_fusion)
    x = sub.add_parser("export", help="write an index's vectors for Anserini or OpenSearch")
    x.add_argument("index")
    x.add_argument("out", help="folder to create")
    x.add_argument("--format", required=True, choices=["anserini", "opensearch"])
    x.add_argument("--index-name", help="OpenSearch index name (default: the index folder's)")
    x.set_defaults(func=cmd_export)
    _add_train_parser(sub)
    _add_adapt_parser(sub)
    sv = sub.add_parser("serve", help="run the HTTP search service (builds a missing index)")
    from sparseretr.service.server import add_serve_arguments

    add_serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)
    return p


def cmd_serve(a: argparse.Namespace) -> int:
    from sparseretr.service.server import serve, settings_from_args

    serve(settings_from_args(a))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars are noise on a command line
    from sparseretr.errors import USER_ERRORS

    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"sparseretr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
