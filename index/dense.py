"""Dense vectors next to a sparse index: FAISS storage only (the model lives in sparseretr.dense).

Layout of `<index>/dense/` (format_version 1):

    faiss.index   IndexFlatIP (exact, default) or IndexHNSWFlat (inner product, approximate)
    dense.json    written last: format, kind, dim, n, encoder_config, hnsw params, file size

Row i is the sparse index's internal doc id i, so hybrid search maps dense hits to external ids
through the sparse index and needs no id table of its own.

Why no separate embeddings.npy: faiss.index is opened with IO_FLAG_MMAP_IFC, which maps the
flat vector storage (of both kinds) zero-copy: opening costs nothing, worker processes share the
page cache, and `scores_for` reads rows through a numpy view of that storage. A second copy of
the vectors would double disk for no gain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from sparseretr.index.errors import SparseIndexError
from sparseretr.index.format import fsync_dir, fsync_file
from sparseretr.index.versioned_json import VersionedJson

DENSE_DIR = "dense"
DENSE_FORMAT = "sparseretr-dense"
DENSE_FORMAT_VERSION = 1
FAISS_FILE = "faiss.index"
CONFIG_FILE = "dense.json"
KINDS: tuple[str, ...] = ("flat", "hnsw")
Kind = Literal["flat", "hnsw"]


class DenseIndexError(SparseIndexError):
    """The dense folder is missing, damaged, or does not fit its sparse index.

    A SparseIndexError so callers catch every index problem in one place.
    """


class DenseIndex:
    """Read-only FAISS inner-product index whose rows are the sparse index's internal ids."""

    def __init__(self, path: Path, config: dict[str, Any], index: faiss.Index) -> None:
        self.path = path
        self.config = config
        self._index = index
        flat = faiss.downcast_index(index.storage if config["kind"] == "hnsw" else index)
        n, d = int(index.ntotal), int(index.d)
        view = faiss.rev_swig_ptr(flat.get_xb(), n * d) if n else np.zeros(0, np.float32)
        self._vectors = np.asarray(view, dtype=np.float32).reshape(n, d)
        self._vectors.flags.writeable = False  # may be a read-only file mapping

    # ----------------------------------------------------------------- write
    @staticmethod
    def writer(
        embeddings: np.ndarray,
        encoder_config: Mapping[str, Any],
        *,
        kind: Kind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
    ) -> Callable[[Path], None]:
        """Validate now, return `write(folder)` for build_index's extras.

        Validating before returning makes bad input fail before the sparse build does any work;
        the callable writes inside the caller's temporary folder, dense.json last, so the atomic
        rename of the whole index publishes it.
        """
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] < 1:
            raise ValueError(f"embeddings must be a 2-D [n, dim] array, got shape {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise ValueError("embeddings hold NaN or infinite values")
        if kind not in KINDS:
            raise ValueError(f"dense index kind must be one of {KINDS}, got {kind!r}")
        for name, v in (
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        n, dim = emb.shape
        config: dict[str, Any] = {
            "format": DENSE_FORMAT,
            "format_version": DENSE_FORMAT_VERSION,
            "kind": kind,
            "metric": "inner_product",
            "dim": int(dim),
            "n": int(n),
            "encoder_config": dict(encoder_config),
            "hnsw": {"M": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
            if kind == "hnsw"
            else None,
        }
        json.dumps(config)  # fail now if the encoder config can't be recorded

        def write(folder: Path) -> None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = ef_construction
            else:
                index = faiss.IndexFlatIP(dim)
            if n:
                index.add(emb)
            faiss.write_index(index, str(folder / FAISS_FILE))
            fsync_file(folder / FAISS_FILE)
            done = {**config, "files": {FAISS_FILE: {"size": (folder / FAISS_FILE).stat().st_size}}}
            (folder / CONFIG_FILE).write_text(json.dumps(done, indent=2), encoding="utf-8")
            fsync_file(folder / CONFIG_FILE)
            fsync_dir(folder)

        return write

    # ------------------------------------------------------------------ open
    @classmethod
    def open(
        cls, folder: str | Path, *, n_docs: int | None = None, ef_search: int | None = None
    ) -> DenseIndex:
        """Open `<index>/dense/`; n_docs (the sparse index's) guards against a mismatched pair."""
        root = Path(folder)
        if not root.is_dir():
            raise DenseIndexError(f"no dense index at {root} (folder missing)")
        config = _read_config(root)
        fpath = root / FAISS_FILE
        if not fpath.is_file():
            raise DenseIndexError(f"{root}: {FAISS_FILE} is missing; rebuild the dense index")
        size = config["files"][FAISS_FILE]["size"]
        if fpath.stat().st_size != size:
            raise DenseIndexError(
                f"{fpath} has {fpath.stat().st_size} bytes, {CONFIG_FILE} says {size}: the file "
                "is truncated or was replaced; rebuild the dense index"
            )
        try:
            index = faiss.read_index(str(fpath), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as e:
            raise DenseIndexError(f"{fpath} is not a readable FAISS index: {e}") from e
        expected = faiss.IndexHNSWFlat if config["kind"] == "hnsw" else faiss.IndexFlatIP
        if not isinstance(index, expected) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise DenseIndexError(
                f"{fpath} holds a {type(index).__name__}, expected an inner-product "
                f"{expected.__name__} ({config['kind']!r} in {CONFIG_FILE})"
            )
        if int(index.ntotal) != config["n"] or int(index.d) != config["dim"]:
            raise DenseIndexError(
                f"{fpath} holds {index.ntotal} x {index.d} vectors, {CONFIG_FILE} says "
                f"{config['n']} x {config['dim']}; rebuild the dense index"
            )
        if n_docs is not None and config["n"] != n_docs:
            raise DenseIndexError(
                f"{root} holds {config['n']} vectors but the sparse index has {n_docs} docs: "
                "the dense folder belongs to another build; rebuild the index"
            )
        if config["kind"] == "hnsw":
            index.hnsw.efSearch = int(ef_search or config["hnsw"]["ef_search"])
        return cls(root, config, index)

    # ------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        return int(self.config["n"])

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def vectors(self) -> np.ndarray:
        """The stored rows, read-only float32 [n, dim] (a merge copies them)."""
        return self._vectors

    @property
    def encoder_config(self) -> dict[str, Any]:
        return dict(self.config["encoder_config"])

    # ---------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: ids int64 [nq, k] (-1 padded), float32 scores (-inf padded)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        q = self._check_queries(queries)
        nq, k = q.shape[0], int(k)
        ids = np.full((nq, k), -1, dtype=np.int64)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        kk = min(k, self.n)
        if nq and kk:
            d, i = self._index.search(q, kk)
            ids[:, :kk], scores[:, :kk] = i, d
            scores[ids < 0] = -np.inf
        return ids, scores

    def scores_for(self, query: np.ndarray, internal_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Exact inner products of one query with the given rows (also exact under HNSW)."""
        q = self._check_queries(query)
        if q.shape[0] != 1:
            raise ValueError(f"scores_for takes one query vector, got {q.shape[0]}")
        rows = np.asarray(internal_ids, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"internal doc ids must lie in [0, {self.n})")
        return (self._vectors[rows] @ q[0]).astype(np.float32)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"queries must be [nq, {self.dim}] (or [{self.dim}]), got shape "
                f"{np.shape(queries)}; were they encoded with this index's model?"
            )
        return np.ascontiguousarray(q)

    def __repr__(self) -> str:
        return f"DenseIndex({str(self.path)!r}, kind={self.kind!r}, n={self.n}, dim={self.dim})"


_CONFIG_JSON = VersionedJson(
    DENSE_FORMAT, DENSE_FORMAT_VERSION, "dense index config", invalid=DenseIndexError,
    foreign=DenseIndexError, outdated=DenseIndexError, hint="rebuild the dense index",
)  # fmt: skip


def _read_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise DenseIndexError(
            f"{root}: {CONFIG_FILE} is missing (an interrupted write?); rebuild the dense index"
        )
    config = _CONFIG_JSON.read(path)
    try:
        ok = (
            config["kind"] in KINDS
            and _count(config["n"], 0)
            and _count(config["dim"], 1)
            and isinstance(config["encoder_config"], dict)
            and _count(config["files"][FAISS_FILE]["size"], 0)
            and (config["kind"] == "flat" or _count(config["hnsw"]["ef_search"], 1))
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DenseIndexError(f"{path} lacks required fields or holds invalid values")
    return config


def _count(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo
