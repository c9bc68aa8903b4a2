"""The batch indexing job: count, fit, encode shards (resumable), merge, write the index.

Phases, each safe to kill:
  count   non-blank corpus lines -> the shard size and number (and the progress bar's total)
  fit     corpus statistics (BM25 vocabulary, corpus IDF), saved into the work folder so that
          every worker encodes with the same state; a resume re-fits and checks the hash
  encode  pending shards only, streamed from the corpus, in-process / worker processes / Ray
  merge   shards in order, each checked against the corpus ids at its positions
  write   the same final step as an in-memory build (sparseretr.indexing.write_index),
          atomic; the index manifest records the work folder's id, so a job killed after the
          index was published but before the cleanup finishes cleanly on the next run
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.batch.encode import EncoderSpec, ShardDone
from sparseretr.batch.local import encode_local, gpu_devices, plan_workers
from sparseretr.batch.workdir import (
    MANIFEST,
    WorkDir,
    WorkDirError,
    corpus_fingerprint,
    discard,
    work_dir_for,
)
from sparseretr.corpus import corpus_file, count_documents, doc_text, iter_corpus
from sparseretr.encoders import SparseEncoder
from sparseretr.index.errors import UserInputError
from sparseretr.index.vectors import SparseVectors
from sparseretr.indexing import BuildSummary, folder_bytes, write_index

DEFAULT_SHARD_SIZE = 1000  # the most documents per shard when --shard-size is not given
# Below this many documents per worker, one in-process worker beats starting more: each worker
# process imports torch and loads the models before it encodes anything.
MIN_DOCS_PER_WORKER = 256


@dataclass
class BatchOptions:
    """`sparseretr index build` options; those that change shard content form the work key."""

    shard_size: int | None = None  # None: auto_shard_size for the workers of this machine
    workers: int | None = None
    ray: bool = False
    ray_address: str | None = None
    keep_work: bool = False
    dense_model: str | None = None
    with_bm25: bool = False
    limit: int | None = None
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    overwrite: bool = False
    show_progress: bool = True
    # Called with (documents encoded so far, total) as shards finish (the service's /readyz).
    on_progress: Callable[[int, int], None] | None = None


def auto_shard_size(n_docs: int, workers: int) -> int:
    """Equal shards, as many as a multiple of the workers, none above DEFAULT_SHARD_SIZE.

    Why: workers take shards as they finish them, so the job ends with the slowest last round.
    Fixed 1,000-document shards leave cores idle there: SciFact's 5,183 documents on 2 workers
    made 6 shards, the last of 183, and one core waited through most of a shard's time.
    """
    w = max(1, min(workers, n_docs // MIN_DOCS_PER_WORKER))
    n_shards = w * -(-n_docs // (w * DEFAULT_SHARD_SIZE))
    return -(-n_docs // n_shards)


def _planned_workers(encoder: SparseEncoder, o: BatchOptions, n_docs: int) -> int:
    """The workers the local runner will start (Ray's count is the cluster's: unknown here)."""
    if o.ray:
        return o.workers or 1
    gpus = gpu_devices(o.device) if encoder.kind != "bm25" or o.dense_model else []
    return plan_workers(o.workers, n_docs, gpus)[0]


def work_key(corpus: Path, encoder: SparseEncoder, o: BatchOptions) -> dict[str, Any]:
    """Everything that decides what a shard holds; workers, runner and --with-bm25 do not.
    shard_size is the option as given (None: auto); the size it resolved to is in the work
    folder's manifest, so that a resume on a machine with other cores keeps the shards."""
    return {
        "corpus": corpus_fingerprint(corpus),
        "limit": o.limit,
        "shard_size": o.shard_size,
        "encoder_config": encoder.config(),
        "batch_size": o.batch_size or getattr(encoder, "batch_size", None),
        "device": o.device,
        "dtype": o.dtype,
        "dense_model": o.dense_model,
    }


def finished_build(out: str | Path, key: dict[str, Any]) -> bool:
    """True when `out` was published by the work folder beside it, for these same settings.

    That is a job killed after its atomic rename but before deleting the work folder, or one
    run with --keep-work: running it again only cleans up instead of refusing the output.
    """
    out = Path(out).absolute()
    try:
        work = json.loads((work_dir_for(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    index = _index_manifest(out) or {}
    same_key = work.get("key") == json.loads(json.dumps(key))
    return same_key and index.get("build", {}).get("work_id") == work.get("work_id")


def _index_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a plain index folder, or of a segmented index's first segment."""
    from sparseretr.index.segments import FIRST_SEGMENT, SEGMENTS_DIR

    for path in (out / "manifest.json", out / SEGMENTS_DIR / FIRST_SEGMENT / "manifest.json"):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def build_batch(
    corpus: str | Path, out: str | Path, encoder: SparseEncoder, options: BatchOptions
) -> BuildSummary:
    """Encode `corpus` shard by shard into `<out>.work/`, then write the index at `out`."""
    t_start = time.perf_counter()
    o = options
    if o.shard_size is not None and (isinstance(o.shard_size, bool) or o.shard_size < 1):
        raise UserInputError(f"--shard-size must be >= 1, got {o.shard_size}")
    if o.workers is not None and o.workers < 1:
        raise UserInputError(f"--workers must be >= 1, got {o.workers}")
    out = Path(out).absolute()
    cpath = corpus_file(corpus)
    reuse = True  # the caller's encoder encodes the shards in-process (one worker)
    if encoder.kind != "bm25" or o.dense_model:  # BM25 alone runs no model (nor torch)
        from sparseretr.encoders._torch import document_dtype, pick_device, resolve_dtype

        dtype = document_dtype(o.device, o.dtype)
        if dtype != o.dtype:  # reload only where the encoder would autocast otherwise (CPU)
            dev = pick_device(o.device)
            reuse = resolve_dtype(dev, dtype) == resolve_dtype(dev, o.dtype)
        o = replace(o, dtype=dtype)
    key = work_key(cpath, encoder, o)
    if not o.overwrite and finished_build(out, key):
        return _already_built(out, o, t_start)
    if (out.exists() or out.is_symlink()) and not o.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    phases: dict[str, float] = {}
    t = time.perf_counter()
    n_docs = count_documents(cpath)
    if o.limit is not None:
        n_docs = min(n_docs, max(o.limit, 0))
    if n_docs == 0:
        raise UserInputError(f"corpus {corpus} holds no documents")
    phases["count"] = time.perf_counter() - t

    work = WorkDir.open(work_dir_for(out), key, overwrite=o.overwrite)
    try:
        size = o.shard_size or work.manifest.get("shard_size")
        if not size:
            size = auto_shard_size(n_docs, _planned_workers(encoder, o, n_docs))
        o = replace(o, shard_size=size)
        n_shards = -(-n_docs // o.shard_size)
        _remove_stale_builds(out)
        work.update(n_docs=n_docs, n_shards=n_shards, shard_size=o.shard_size)
        t = time.perf_counter()
        spec = _fit(work, encoder, cpath, o)
        phases["fit"] = time.perf_counter() - t

        done = work.done_shards()
        reused = len(done)
        docs_reused = sum(min(o.shard_size, n_docs - i * o.shard_size) for i in done)
        run = _Run(work, cpath, encoder, spec, n_docs, n_shards, o, reuse_encoder=reuse)
        workers, (ids, vectors, dense, texts) = _encode_and_merge(run, phases)
        encode_s = phases["encode"]

        t = time.perf_counter()
        path = write_index(
            out,
            ids,
            vectors,
            encoder,
            docs=_docs(cpath, o.limit),
            texts=texts,
            dense=dense,
            with_bm25=o.with_bm25,
            build_info={
                "encode_s": round(encode_s, 3),
                "device": str(spec.device or getattr(encoder, "device", "cpu")),
                "dtype": spec.dtype or "float32",
                "runner": "ray" if o.ray else "local",
                "workers": workers,
                "shard_size": o.shard_size,
                "n_shards": n_shards,
                "shards_reused": reused,
                "work_id": work.manifest["work_id"],
            },
            overwrite=o.overwrite,
        )
        phases["write"] = time.perf_counter() - t
    except BaseException:
        work.close()
        raise
    if o.keep_work:
        work.close()
    else:
        work.remove()
    return BuildSummary.of(
        path,
        len(ids),
        vectors.nnz,
        encode_s=encode_s,
        t_start=t_start,
        phases_s=phases,
        docs_encoded=len(ids) - docs_reused,
        shards={
            "total": n_shards,
            "reused": reused,
            "shard_size": o.shard_size,
            "workers": workers,
            "runner": "ray" if o.ray else "local",
        },
    )


def build_from_corpus(
    corpus: str | Path,
    out: str | Path,
    encoder: SparseEncoder,
    *,
    dense_model: str | None = None,
    with_bm25: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildSummary:
    """Build an index the one way there is: the resumable batch job of `sparseretr index
    build` (sparseretr.batch), with its defaults; the service's first start uses it too."""
    options = BatchOptions(
        dense_model=dense_model, with_bm25=with_bm25, limit=limit, batch_size=batch_size,
        overwrite=overwrite, show_progress=show_progress, on_progress=on_progress,
    )  # fmt: skip
    return build_batch(corpus, out, encoder, options)


# ------------------------------------------------------------------ phases
def _fit(work: WorkDir, encoder: SparseEncoder, cpath: Path, o: BatchOptions) -> EncoderSpec:
    """Fit on the whole corpus when the encoder learns statistics; keep its state for workers."""
    if type(encoder).fit is not SparseEncoder.fit:
        encoder.fit([doc_text(d) for d in _docs(cpath, o.limit)])
    tmp = work.root / f".encoder.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    encoder.save_state(tmp)
    digest = _folder_sha256(tmp)
    recorded = work.manifest.get("encoder_state_sha256")
    if recorded is not None and recorded != digest:
        shutil.rmtree(tmp)
        raise WorkDirError(
            f"the encoder fitted now differs from the one the shards in {work.root} were "
            "encoded with; pass --overwrite to discard them"
        )
    if work.encoder_state.is_dir() and _folder_sha256(work.encoder_state) == digest:
        shutil.rmtree(tmp)
    else:
        shutil.rmtree(work.encoder_state, ignore_errors=True)
        os.replace(tmp, work.encoder_state)
    if recorded is None:
        work.update(encoder_state_sha256=digest, encoder_config_fitted=encoder.config())
    return EncoderSpec(
        config=encoder.config(),
        state_dir=str(work.encoder_state),
        batch_size=o.batch_size,
        device=o.device,
        dtype=o.dtype,
        dense_model=o.dense_model,
    )


@dataclass(frozen=True)
class _Run:
    """What the encode and merge phases of one run share."""

    work: WorkDir
    cpath: Path
    encoder: SparseEncoder
    spec: EncoderSpec
    n_docs: int
    n_shards: int
    o: BatchOptions
    # False when the job's dtype is not what the caller's encoder autocasts to: the
    # in-process worker then rebuilds it from the spec, like the worker processes do.
    reuse_encoder: bool = True


def _encode(run: _Run) -> int:
    """Encode the shards not on disk yet; returns the number of workers used (0: none left)."""
    o, work, size = run.o, run.work, run.o.shard_size
    done = work.done_shards()
    pending = [i for i in range(run.n_shards) if i not in done]
    if not pending:
        return 0
    if done:
        _note(o, f"resuming: {len(done)}/{run.n_shards} shards already encoded in {work.root}")
    from tqdm.auto import tqdm

    bar = tqdm(
        total=run.n_docs,
        initial=sum(min(size, run.n_docs - i * size) for i in done),
        unit="doc",
        desc="encode",
        disable=not o.show_progress,
        smoothing=0.1,
    )

    def on_done(d: ShardDone) -> None:
        bar.update(d.n_docs)
        if o.on_progress is not None:
            o.on_progress(int(bar.n), run.n_docs)

    if o.on_progress is not None:
        o.on_progress(int(bar.n), run.n_docs)

    stream = _pending_shards(run.cpath, o.limit, size, set(pending))
    try:
        if o.ray:
            from sparseretr.batch.ray_runner import encode_ray

            return encode_ray(
                work.root,
                stream,
                run.spec,
                address=o.ray_address,
                workers=o.workers,
                on_done=on_done,
                show_progress=o.show_progress,
            )
        gpus = gpu_devices(o.device)
        workers, threads = plan_workers(o.workers, len(pending), gpus)
        spec = replace(run.spec, threads=threads)
        encoder = run.encoder if run.reuse_encoder else None
        local = {"workers": workers, "gpus": gpus, "on_done": on_done, "encoder": encoder}
        encode_local(work.root, stream, spec, **local)
        return workers
    finally:
        bar.close()


def _encode_and_merge(
    run: _Run, phases: dict[str, float]
) -> tuple[int, tuple[list[str], SparseVectors, Any, list[str] | None]]:
    """Encode what is missing, then merge; a damaged shard is removed and encoded once more."""
    stray = sorted(run.work.done_shards() - set(range(run.n_shards)))
    if stray:
        raise WorkDirError(f"{run.work.root} holds shards past the corpus end ({stray[:3]}...)")
    phases["encode"] = phases["merge"] = 0.0
    workers = 0
    for attempt in range(2):
        t = time.perf_counter()
        workers = max(workers, _encode(run))
        phases["encode"] += time.perf_counter() - t
        t = time.perf_counter()
        try:
            return workers, _merge(run)
        except _DamagedShard as e:
            if attempt:
                raise WorkDirError(str(e)) from e
            e.path.unlink(missing_ok=True)
            _note(run.o, f"{e}; encoding it again")
        finally:
            phases["merge"] += time.perf_counter() - t
    raise AssertionError("unreachable")


class _DamagedShard(Exception):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"shard {path.name} is damaged ({why})")
        self.path = path


def _merge(run: _Run) -> tuple[list[str], SparseVectors, Any, list[str] | None]:
    """Shards in stream order, each checked against the corpus ids at its positions."""
    work, cpath, o, n_shards = run.work, run.cpath, run.o, run.n_shards
    vocab_size = run.encoder.vocab_size
    if corpus_fingerprint(cpath) != work.manifest["key"]["corpus"]:
        raise WorkDirError(f"corpus {cpath} changed during the build; run again with --overwrite")
    ids: list[str] = []
    texts: list[str] | None = [] if o.with_bm25 else None
    parts: list[SparseVectors] = []
    dense_parts: list[np.ndarray] = []
    dense_config: dict[str, Any] | None = None
    n = 0
    for i, docs in _shards(cpath, o.limit, o.shard_size):
        n += 1
        path = work.shard_path(i)
        try:
            shard = work.read_shard(i)
        except (WorkDirError, FileNotFoundError) as e:
            raise _DamagedShard(path, str(e)) from e
        expected = [d["id"] for d in docs]
        if shard.ids != expected:
            raise _DamagedShard(path, f"it holds other documents than corpus shard {i}")
        if shard.vectors.vocab_size != vocab_size:
            raise _DamagedShard(path, f"vocabulary {shard.vectors.vocab_size} != {vocab_size}")
        if o.dense_model and shard.dense is None:
            raise _DamagedShard(path, "it has no dense rows")
        ids += expected
        parts.append(shard.vectors)
        if texts is not None:
            texts += [doc_text(d) for d in docs]
        if shard.dense is not None and o.dense_model:
            dense_parts.append(shard.dense)
            dense_config = dense_config or shard.dense_config
    if n != n_shards:
        raise WorkDirError(f"the corpus now yields {n} shards, the count said {n_shards}")
    dense = None
    if o.dense_model:
        from sparseretr.index.dense import DenseIndex

        dense = DenseIndex.writer(np.concatenate(dense_parts), dense_config or {})
    return ids, SparseVectors.concat(parts), dense, texts


def _already_built(out: Path, o: BatchOptions, t_start: float) -> BuildSummary:
    """The job published `out` before (killed before cleanup, or --keep-work): report it."""
    manifest = _index_manifest(out) or {}
    if not o.keep_work:
        discard(work_dir_for(out))
    _note(o, f"{out} was already built by this job with these settings; nothing to do")
    return BuildSummary(
        path=out,
        n_docs=int(manifest["n_docs"]),
        n_postings=int(manifest["n_postings"]),
        nnz_per_doc=float(manifest.get("stats", {}).get("avg_nnz_per_doc", 0.0)),
        encode_s=0.0,
        total_s=time.perf_counter() - t_start,
        bytes_on_disk=folder_bytes(out),
        shards={"already_built": True},
    )


# ------------------------------------------------------------------ streams
def _docs(cpath: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    docs = iter_corpus(cpath)
    return docs if limit is None else itertools.islice(docs, max(limit, 0))


def _shards(cpath: Path, limit: int | None, size: int) -> Iterator[tuple[int, list[dict]]]:
    """Shard i = the documents at stream positions [i*size, (i+1)*size)."""
    docs = _docs(cpath, limit)
    for i in itertools.count():
        chunk = list(itertools.islice(docs, size))
        if not chunk:
            return
        yield i, chunk


def _pending_shards(
    cpath: Path, limit: int | None, size: int, pending: set[int]
) -> Iterator[tuple[int, list[str], list[str]]]:
    last = max(pending)
    for i, docs in _shards(cpath, limit, size):
        if i in pending:
            yield i, [d["id"] for d in docs], [doc_text(d) for d in docs]
        if i >= last:
            return


def _remove_stale_builds(out: Path) -> None:
    """Temp folders of a job killed while writing the index or deleting its work folder.

    Safe: only a build of `out` makes them, and we hold the lock of out's work folder.
    """
    for pattern in (f".{out.name}.tmp-*", f".{out.name}.work.tmp-*"):
        for p in out.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def _note(o: BatchOptions, message: str) -> None:
    if o.show_progress:
        print(f"sparseretr: {message}", file=sys.stderr)
