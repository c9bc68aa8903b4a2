"""Optional BM25 baselines with pyserini (Lucene), in BEIR's "flat" and "multifield" settings.

Flat = one ``contents`` field of title + text; multifield = ``contents`` (the text) and
``title`` indexed apart and searched together, each with boost 1. Both BM25 k1=0.9, b=0.4: the
settings of pyserini's BEIR regressions, so our baseline numbers match published ones.
pyserini needs a JVM, so everything here is lazy and fails with an actionable message.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparseretr.index.errors import UnavailableError

from sparseretr.beir import BeirData
from sparseretr.corpus import doc_text

logger = logging.getLogger(__name__)

MIN_JAVA = 11
INSTALL_HINT = "install the extra: pip install 'sparseretr[bm25]'"
JAVA_HINT = (
    f"pyserini 0.22.1 requires a Java {MIN_JAVA}+ runtime "
    "(Debian: apt-get install openjdk-17-jdk-headless, or set JAVA_HOME to a JDK 11+)"
)
DONE_MARKER = ".sparseretr-complete"


class PyseriniUnavailableError(UnavailableError):
    """pyserini or the Java runtime it needs is missing; the BM25 baseline cannot run."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "sparseretr" / "pyserini"


def check_java() -> str:
    """Return the java executable, or raise if none (or one older than Java 11) is usable."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not java.is_file():
            raise PyseriniUnavailableError(f"JAVA_HOME={java_home} has no bin/java; {JAVA_HINT}")
        exe = str(java)
    else:
        found = shutil.which("java")
        if found is None:
            raise PyseriniUnavailableError(f"no 'java' on PATH and JAVA_HOME unset; {JAVA_HINT}")
        exe = found
    major = _java_major(exe)
    if major is not None and major < MIN_JAVA:
        raise PyseriniUnavailableError(f"{exe} is Java {major}; {JAVA_HINT}")
    return exe


def require_pyserini() -> None:
    """Fail early, with the install hint, before pyserini starts a JVM."""
    try:
        importlib.import_module("pyserini")
    except ImportError as exc:
        raise PyseriniUnavailableError(f"pyserini is not installed; {INSTALL_HINT}") from exc
    check_java()


def corpus_fingerprint(corpus: Mapping[str, Mapping[str, Any]]) -> str:
    """Content hash so a cached index is reused only for the exact same corpus text."""
    digest = hashlib.sha256()
    for doc_id in sorted(corpus):
        digest.update(doc_id.encode())
        digest.update(b"\0")
        digest.update(doc_text(dict(corpus[doc_id])).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def build_index(
    corpus: Mapping[str, Mapping[str, Any]],
    index_dir: Path,
    threads: int = 2,
    multifield: bool = False,
) -> Path:
    """Index ``corpus`` with pyserini's JsonCollection indexer (subprocess: own JVM, own heap).

    Built into a temp dir and renamed, so an interrupted build is never mistaken for a cache hit.
    """
    require_pyserini()
    index_dir = Path(index_dir)
    if (index_dir / DONE_MARKER).is_file():
        return index_dir
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=index_dir.parent, prefix=".build-") as tmp:
        collection = Path(tmp) / "collection"
        collection.mkdir()
        with (collection / "docs.jsonl").open("w", encoding="utf-8") as out:
            for doc_id, doc in corpus.items():
                if multifield:
                    text, title = doc.get("text") or "", doc.get("title") or ""
                    record = {"id": doc_id, "contents": text, "title": title}
                else:
                    record = {"id": doc_id, "contents": doc_text(dict(doc))}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        staging = Path(tmp) / "index"
        cmd = [
            sys.executable, "-m", "pyserini.index.lucene",
            "-collection", "JsonCollection",
            "-generator", "DefaultLuceneDocumentGenerator",
            "-input", str(collection),
            "-index", str(staging),
            "-threads", str(max(1, threads)),
            *(["-fields", "title"] if multifield else []),
        ]  # fmt: skip
        logger.info("building Lucene index: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not staging.is_dir():
            tail = (proc.stderr or proc.stdout or "")[-2000:]
            raise RuntimeError(f"pyserini indexing failed (exit {proc.returncode}):\n{tail}")
        (staging / DONE_MARKER).write_text(f"{len(corpus)}\n", encoding="utf-8")
        if index_dir.exists():
            shutil.rmtree(index_dir)
        os.replace(staging, index_dir)
    return index_dir


MULTIFIELD_FIELDS = {"contents": 1.0, "title": 1.0}


class PyseriniBM25:
    """BM25 (k1=0.9, b=0.4) over a flat or multifield Lucene index; a ``Searcher``."""

    def __init__(
        self,
        index_dir: str | Path,
        k1: float = 0.9,
        b: float = 0.4,
        threads: int = 2,
        multifield: bool = False,
    ):
        require_pyserini()
        from pyserini.search.lucene import LuceneSearcher

        self.index_dir = Path(index_dir)
        self.k1, self.b, self.threads = k1, b, max(1, threads)
        self.fields = dict(MULTIFIELD_FIELDS) if multifield else {}
        self._searcher = LuceneSearcher(str(self.index_dir))
        self._searcher.set_bm25(k1, b)

    @classmethod
    def from_corpus(
        cls,
        corpus: Mapping[str, Mapping[str, Any]],
        name: str = "corpus",
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> PyseriniBM25:
        """Index (or reuse the cached index of) ``corpus`` and open a searcher on it."""
        require_pyserini()
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        multifield = bool(kwargs.get("multifield"))
        kind = "multifield" if multifield else "flat"
        index_dir = root / f"{safe}-{kind}-{corpus_fingerprint(corpus)}"
        build_index(corpus, index_dir, threads=kwargs.get("threads", 2), multifield=multifield)
        return cls(index_dir, **kwargs)

    @classmethod
    def from_beir(
        cls, data: BeirData, cache_dir: str | Path | None = None, **kwargs: Any
    ) -> PyseriniBM25:
        """``from_corpus`` for a loaded BEIR split (the cache key includes the dataset name)."""
        return cls.from_corpus(data.corpus, name=data.name, cache_dir=cache_dir, **kwargs)

    def search(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        if len(texts) == 1:
            hits = self._searcher.search(texts[0], k=k, fields=self.fields)
            return [[(h.docid, float(h.score)) for h in hits]]
        qids = [str(i) for i in range(len(texts))]
        batch = self._searcher.batch_search(
            texts, qids, k=k, threads=self.threads, fields=self.fields
        )
        return [[(h.docid, float(h.score)) for h in batch.get(q, [])] for q in qids]


def _java_major(exe: str) -> int | None:
    """Major version from ``java -version`` ("1.8.0_x" -> 8, "17.0.15" -> 17); None if unknown."""
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PyseriniUnavailableError(f"cannot run {exe} ({exc}); {JAVA_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major
