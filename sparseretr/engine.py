"""Engine: everything a query needs, loaded once, shared by the HTTP service and `eval`.

One code path from query text to fused hits means the numbers `sparseretr eval beir --mode
hybrid` reports are the numbers the service serves.

Index it reads (index/segments.py): a segmented index (commit point + segments) or a plain v2
index folder (read-only). Each segment holds the learned sparse postings, and optionally
dense/ (a DenseIndex: enables dense and hybrid) and bm25/ (a BM25 index: enables bm25).
Encoders come from the first segment; every segment shares them.

Writes (a segmented index opened with writable=True): documents are encoded here by every
side's encoder, then handed to index.writer.IndexWriter, which logs them durably and makes
them searchable at the next refresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparseretr.corpus import doc_text
from sparseretr.dense import DenseEncoder
from sparseretr.encoders import BM25Encoder, SparseEncoder, load_encoder
from sparseretr.explain import explain_hits
from sparseretr.fusion import (
    DEFAULTS,
    FusedHit,
    Normalization,
    hybrid_weights,
    make_fuser,
    single,
)
from sparseretr.index.dense import DENSE_DIR
from sparseretr.index.errors import UserInputError
from sparseretr.index.format import BM25_DIR
from sparseretr.index.segments import SegHit, Snapshot, is_segmented
from sparseretr.index.writer import IndexWriter

if TYPE_CHECKING:
    from sparseretr.cluster.snapshot import ShardedSnapshot

MODES: tuple[str, ...] = ("sparse", "dense", "hybrid", "bm25")


@dataclass
class SearchResult:
    """Top-k fused hits of one query.

    timing: milliseconds; encode_ms and search_ms are the batch's cost divided by its size
    (encoding and search run once per batch), fuse_ms is this query's own.
    explain: hit id -> its matched tokens (heaviest first); None when not asked, or for dense
    mode, which has no tokens to show.
    """

    hits: list[FusedHit]
    timing: dict[str, float] = field(default_factory=dict)
    explain: dict[str, list[dict[str, Any]]] | None = None


class ReadOnlyIndexError(UserInputError):
    """A write to an index opened read-only (or a plain, unsegmented index folder)."""


class LiveDocs:
    """Stored fields as a reader sees them: a write awaiting refresh first (read your own
    writes), then the live copy in the current snapshot."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, doc_id: str) -> dict | None:
        writer = self._engine.writer
        if writer is not None:
            pending, doc = writer.get_pending(doc_id)
            if pending:
                return doc
        return self._engine.snapshot.get_documents([doc_id])[0]

    def get_many(self, doc_ids: Sequence[str]) -> list[dict | None]:
        """One snapshot lookup for every id not awaiting refresh (one call per shard on a
        sharded deployment, not one per id)."""
        out: list[dict | None] = [None] * len(doc_ids)
        rest = []
        writer = self._engine.writer
        for i, doc_id in enumerate(doc_ids):
            pending, doc = writer.get_pending(doc_id) if writer is not None else (False, None)
            if pending:
                out[i] = doc
            else:
                rest.append(i)
        found = self._engine.snapshot.get_documents([doc_ids[i] for i in rest]) if rest else []
        for i, doc in zip(rest, found, strict=True):
            out[i] = doc
        return out


class Engine:
    """Query (and document) encoders over a snapshot of the index, kept fresh by a writer."""

    def __init__(
        self,
        source: Snapshot | IndexWriter | ShardedSnapshot,
        sparse_encoder: SparseEncoder,
        *,
        bm25_encoder: SparseEncoder | None = None,
        dense_encoder: DenseEncoder | None = None,
    ) -> None:
        self.writer = source if isinstance(source, IndexWriter) else None
        self._static = None if self.writer is not None else source
        first = self.snapshot.first
        vocab = self.snapshot.vocab("sparse").size  # with words live writes added
        if sparse_encoder.vocab_size != vocab:
            raise UserInputError(
                f"encoder vocabulary ({sparse_encoder.vocab_size}) does not match the index "
                f"({vocab}): the index was built with another encoder"
            )
        if dense_encoder is not None and first.dense is not None:  # noqa: SIM102
            if dense_encoder.dim != first.dense.dim:
                raise UserInputError(
                    f"dense encoder dim {dense_encoder.dim} != dense index dim {first.dense.dim}"
                )
        self.sparse_encoder = sparse_encoder
        self.bm25_encoder = bm25_encoder
        self.dense_encoder = dense_encoder
        self.docstore = LiveDocs(self)
        self._grow_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        index_path: str | Path,
        *,
        dense: bool = True,
        bm25: bool = True,
        device: str | None = None,
        torch_threads: int | None = 1,
        writable: bool = False,
        **writer_options: Any,
    ) -> Engine:
        """Open the index and whichever optional sides exist (dense=False skips loading the
        dense model, e.g. for a sparse-only service). writable=True opens a segmented index
        for writes (taking its write lock and replaying its write-ahead log).

        torch_threads: intra-op threads for query encoding (process-wide). One by default:
        a query is a few dozen tokens, so OpenMP fan-out costs more than it saves, and under
        load its spinning threads made queries many times slower (benchmarks/README.md,
        "Measurements behind code choices"); concurrency comes from
        serving several queries at once instead. None leaves torch's setting alone.
        """
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        root = Path(index_path)
        if writable and not is_segmented(root):
            raise ReadOnlyIndexError(
                f"{root} is not a segmented index, so it cannot take writes; rebuild it with "
                "`sparseretr index build` (current builds are segmented)"
            )
        source: Snapshot | IndexWriter = (
            IndexWriter(root, dense=dense, **writer_options)
            if writable
            else Snapshot.open(root, dense=dense)
        )
        try:
            return cls.over(source, dense=dense, bm25=bm25, device=device)
        except BaseException:
            source.close()  # a broken side must not leak the lock or the doc store handles
            raise

    @classmethod
    def over(
        cls,
        source: Snapshot | IndexWriter | ShardedSnapshot,
        *,
        dense: bool = True,
        bm25: bool = True,
        device: str | None = None,
    ) -> Engine:
        """An engine over an opened source (a snapshot, a writer, or the router's view of a
        sharded deployment) with the encoders its first segment names."""
        snap = source.snapshot if isinstance(source, IndexWriter) else source
        first = snap.first
        config = first.sparse.encoder_config
        # A model encoder runs on the chosen device (query side, and documents of upserts);
        # BM25 has no model.
        on_device = {"device": device} if device and config.get("kind") != "bm25" else {}
        sparse_enc = load_encoder(config, first.sparse.encoder_dir, **on_device)
        bm25_enc = dense_enc = None
        if bm25 and snap.has_side("bm25"):
            assert first.bm25 is not None
            bm25_enc = load_encoder(first.bm25.encoder_config, first.bm25.encoder_dir)
        for side, enc in (("sparse", sparse_enc), ("bm25", bm25_enc)):
            if isinstance(enc, BM25Encoder):
                enc.extend(snap.vocab(side).added)  # words live writes added since
        if dense and snap.has_side("dense"):
            assert first.dense is not None
            dense_enc = DenseEncoder.from_config(first.dense.encoder_config, device=device)
        return cls(source, sparse_enc, bm25_encoder=bm25_enc, dense_encoder=dense_enc)

    # ------------------------------------------------------------ properties
    @property
    def snapshot(self) -> Snapshot:
        """The committed view searches run on (taken once per search call); on a sharded
        deployment, the router's view of the shards (same methods)."""
        if self.writer is not None:
            return self.writer.snapshot
        assert self._static is not None
        return self._static

    @property
    def writable(self) -> bool:
        return self.writer is not None

    @property
    def modes(self) -> list[str]:
        snap = self.snapshot
        dense = self.dense_encoder is not None and snap.has_side("dense")
        bm25 = self.bm25_encoder is not None and snap.has_side("bm25")
        have = {"sparse": True, "dense": dense, "hybrid": dense, "bm25": bm25}
        return [m for m in MODES if have[m]]

    @property
    def default_mode(self) -> str:
        """hybrid where the index has a dense side, else sparse."""
        return "hybrid" if "dense" in self.modes else "sparse"

    @property
    def name(self) -> str:
        return str(self.sparse_encoder.config().get("kind", "sparse"))

    @property
    def manifest(self) -> dict[str, Any]:
        """The first segment's build manifest (encoder config, build stats)."""
        return self.snapshot.first.sparse.manifest

    def stats(self) -> dict[str, Any]:
        """What /stats and the metrics report: sizes, encoders, segments and the modes."""
        snap = self.snapshot
        first = snap.first
        counts = snap.summary()
        dense = None
        if "dense" in self.modes and first.dense is not None:
            d = first.dense
            dense = {
                "kind": d.kind,
                "n": counts["dense_docs"],
                "dim": d.dim,
                "model": d.encoder_config.get("model"),
            }
        return {
            "index_path": str(snap.root),
            "n_docs": snap.n_docs,
            "n_postings": snap.n_postings,
            "vocab": first.sparse.vocab_size,
            "encoder": self.name,
            "modes": self.modes,
            "dense": dense,
            "bm25_docs": snap.n_docs if "bm25" in self.modes else None,
            "segments": counts["segments"],
            "deleted_docs": counts["deleted_docs"],
            "generation": snap.generation,
            "writable": self.writable,
            "pending_writes": self.writer.n_pending if self.writer is not None else 0,
        }

    def hybrid_bm25_weight(self, bm25_weight: float | None) -> float:
        """The BM25 side's share in a hybrid search: None -> the default where this engine has
        the BM25 side open, else 0; a share > 0 without that side is an error, not ignored."""
        has_bm25 = "bm25" in self.modes
        if bm25_weight is None:
            return float(DEFAULTS["bm25_weight"]) if has_bm25 else 0.0
        hybrid_weights("convex", 0.5, bm25_weight)  # the range check, with fusion's message
        if bm25_weight and not has_bm25:
            raise UserInputError(
                f"bm25_weight {bm25_weight!r} needs the BM25 side, which the index at "
                f"{self.snapshot.root} lacks (no {BM25_DIR}/ folder, or opened with bm25=False)"
            )
        return float(bm25_weight)

    def check_mode(self, mode: str | None) -> str:
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise UserInputError(f"unknown search mode {mode!r}; available modes: {self.modes}")
        if mode not in self.modes:
            side = BM25_DIR if mode == "bm25" else DENSE_DIR
            raise UserInputError(
                f"mode {mode!r} is not available for the index at {self.snapshot.root} "
                f"(no {side}/ folder, or opened with {side}=False); available modes: {self.modes}"
            )
        return mode

    # ---------------------------------------------------------------- search
    def search(
        self,
        queries: Sequence[str],
        *,
        k: int = 10,
        mode: str | None = None,
        fusion: str = DEFAULTS["fusion"],
        alpha: float = DEFAULTS["alpha"],
        rrf_k: int = DEFAULTS["rrf_k"],
        normalization: Normalization = DEFAULTS["normalization"],
        candidates: int = DEFAULTS["candidates"],
        bm25_weight: float | None = None,
        explain: bool = False,
        prune_alpha: float = 1.0,
        term_fraction: float = 1.0,
    ) -> list[SearchResult]:
        """Search a batch: each side encodes all queries in one call, then searches in one call.

        Hybrid takes max(candidates, k) from each side and fuses their union: sparse and dense,
        plus BM25 when bm25_weight > 0 (its share of the fusion; see hybrid_weights). None
        means the default where the BM25 side is open, else 0. mode=None picks default_mode.
        Every side reads the same snapshot.

        prune_alpha < 1 (stop once the best remaining block bound is below alpha x the k-th
        score) and term_fraction < 1 (score only the heaviest query terms carrying that share
        of the query's weight) trade exactness for speed on the sparse and BM25 sides; at 1 and
        1 (the defaults) the top-k is exact. `alpha` is the convex fusion weight, not this.
        """
        mode = self.check_mode(mode)
        for name, v in (("prune_alpha", prune_alpha), ("term_fraction", term_fraction)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
                raise UserInputError(f"{name} must lie in (0, 1], got {v!r}")
        knobs = {"alpha": float(prune_alpha), "term_fraction": float(term_fraction)}
        if isinstance(queries, str):
            raise TypeError("pass a list of query strings, not a single string")
        for name, v in (("k", k), ("candidates", candidates)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserInputError(f"{name} must be an integer >= 1, got {v!r}")
        fuse = None
        if mode == "hybrid":
            bm25_weight = self.hybrid_bm25_weight(bm25_weight)
            fuse = make_fuser(fusion, rrf_k, alpha, normalization, bm25_weight)
        texts = list(queries)
        if not texts:
            return []
        snap = self.snapshot
        depth = max(candidates, k) if mode == "hybrid" else k
        sides = {
            "sparse": ("sparse",),
            "bm25": ("bm25",),
            "dense": ("dense",),
            "hybrid": ("sparse", "dense", "bm25") if bm25_weight else ("sparse", "dense"),
        }[mode]

        t0 = time.perf_counter()
        encoded = {side: self.encode(side, texts, snap) for side in sides}
        t1 = time.perf_counter()
        hits = {side: self._search(snap, side, encoded[side], depth, knobs) for side in sides}
        t2 = time.perf_counter()
        n = len(texts)
        per_q = {"encode_ms": (t1 - t0) * 1e3 / n, "search_ms": (t2 - t1) * 1e3 / n}

        results = []
        for qi in range(len(texts)):
            t3 = time.perf_counter()
            runs = {side: [(h.id, h.score) for h in hits[side][qi]] for side in sides}
            fused = (fuse(runs) if fuse else single(sides[0], runs[sides[0]]))[:k]
            timing = {**per_q, "fuse_ms": (time.perf_counter() - t3) * 1e3}
            result = SearchResult(fused, timing)
            if explain and mode != "dense":
                t4 = time.perf_counter()
                side = "bm25" if mode == "bm25" else "sparse"
                enc = self._encoder(side)
                result.explain = explain_hits(snap, side, enc, encoded[side], qi, fused, hits)
                timing["explain_ms"] = (time.perf_counter() - t4) * 1e3
            results.append(result)
        return results

    def encode(self, side: str, texts: list[str], snap: Snapshot | None = None) -> Any:
        """Queries as one side's encoder sees them (SparseVectors, or dense rows). BM25 takes
        its IDF from the statistics of snap (default: the current snapshot)."""
        if side == "dense":
            assert self.dense_encoder is not None
            return self.dense_encoder.encode(texts)
        enc = self._encoder(side)
        queries = enc.encode_queries(list(texts))
        if isinstance(enc, BM25Encoder):
            df, n = (snap or self.snapshot).doc_freqs(side)
            queries = enc.query_weights(queries, df, n)
        return queries

    # ---------------------------------------------------------------- writes
    def upsert(self, docs: Sequence[dict[str, Any]]) -> int:
        """Encode docs (dicts with id, title, text, optional metadata) with every side's
        encoder and write them; returns once durable (searchable after refresh)."""
        writer = self._require_writer()
        ids = [str(d["id"]) for d in docs]
        texts = [doc_text(d) for d in docs]
        snap = self.snapshot
        if snap.first.bm25 is not None and self.bm25_encoder is None:
            raise ReadOnlyIndexError("the index has a bm25 side: open it with bm25=True")
        dense = None
        if snap.first.dense is not None:
            assert self.dense_encoder is not None  # open() loads it whenever dense/ is read
            dense = self.dense_encoder.encode(texts)
        encoders = {"sparse": self.sparse_encoder}
        if snap.first.bm25 is not None:
            encoders["bm25"] = self._encoder("bm25")
        vectors = {
            side: enc.encode_documents(texts)
            for side, enc in encoders.items()
            if not isinstance(enc, BM25Encoder)  # a model: its vocabulary never grows
        }
        # BM25 gives words it has not seen the next ids, in log order: one write at a time.
        with self._grow_lock:
            lexical = {s: e for s, e in encoders.items() if isinstance(e, BM25Encoder)}
            before = {side: enc.vocab_size for side, enc in lexical.items()}
            new_terms = {}
            try:
                for side, enc in lexical.items():
                    vectors[side] = enc.encode_documents(texts, grow=True)
                    new_terms[side] = enc.tokens(range(before[side], enc.vocab_size))
                return writer.upsert(
                    ids, list(docs), vectors["sparse"], bm25=vectors.get("bm25"), dense=dense,
                    new_terms=new_terms,
                )  # fmt: skip
            except BaseException:
                for side, enc in lexical.items():
                    enc.truncate(before[side])  # not logged: its words were never given out
                raise

    def delete(self, ids: Sequence[str]) -> tuple[int, list[bool]]:
        """Delete documents; returns once durable, with whether each one existed."""
        return self._require_writer().delete(ids)

    def refresh(self) -> Snapshot:
        """Make every acknowledged write searchable (one commit)."""
        return self._require_writer().refresh()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.snapshot.close()

    # ------------------------------------------------------------- internals
    def _require_writer(self) -> IndexWriter:
        if self.writer is None:
            raise ReadOnlyIndexError(
                f"the index at {self.snapshot.root} is open read-only; writes need a segmented "
                "index opened for writing"
            )
        return self.writer

    def _encoder(self, side: str) -> SparseEncoder:
        enc = self.bm25_encoder if side == "bm25" else self.sparse_encoder
        assert enc is not None  # check_mode ran first
        return enc

    def _search(
        self, snap: Snapshot, side: str, encoded: Any, depth: int, knobs: dict[str, float]
    ) -> list[list[SegHit]]:
        if side == "dense":
            return snap.search_dense(encoded, depth)
        return snap.search(side, encoded, depth, **knobs)
