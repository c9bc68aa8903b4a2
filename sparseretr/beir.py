"""Load BEIR datasets (local folder or a known name) into plain dicts.

BEIR's ``GenericDataLoader`` does the parsing so our numbers are comparable with published BEIR
results; this module only adds name resolution and offline-friendly errors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from sparseretr.index.errors import UserInputError

logger = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

# Publicly downloadable BEIR datasets (BioASQ, Signal-1M, TREC-NEWS, Robust04 need licences).
BEIR_DATASETS: frozenset[str] = frozenset(
    {
        "msmarco",
        "trec-covid",
        "nfcorpus",
        "nq",
        "hotpotqa",
        "fiqa",
        "arguana",
        "webis-touche2020",
        "cqadupstack",
        "quora",
        "dbpedia-entity",
        "scidocs",
        "fever",
        "climate-fever",
        "scifact",
    }
)

REQUIRED_FILES = ("corpus.jsonl", "queries.jsonl")
# Relative to the working directory: the project's embedded default data (see Makefile DATA).
DEFAULT_DATASET = Path("..") / "shared" / "data" / "beir" / "scifact"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset folder (or a file in it) is missing and could not be fetched."""


class SplitNotFoundError(DatasetNotFoundError):
    """The requested qrels split does not exist in the dataset folder."""


@dataclass
class BeirData:
    """One BEIR split: the whole corpus plus the queries that have judgements in ``split``."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str
    split: str
    path: Path | None = field(default=None, compare=False)


def default_data_root() -> Path:
    """Where downloaded BEIR zips are cached (overridable per call via ``data_root``)."""
    return Path.home() / ".cache" / "sparseretr" / "beir"


def default_dataset_path() -> Path | None:
    """The embedded SciFact copy next to the checkout, so tools work offline with no arguments."""
    path = Path.cwd() / DEFAULT_DATASET
    return path.resolve() if path.is_dir() else None


def available_splits(folder: Path) -> list[str]:
    """Split names that have a ``qrels/<split>.tsv`` file."""
    qrels_dir = folder / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def resolve_dataset(path_or_name: str | os.PathLike[str], data_root: Path | None = None) -> Path:
    """Turn a folder or a BEIR dataset name into a local BEIR folder, downloading if needed.

    Names may address a CQADupStack sub-forum as ``cqadupstack/android``.
    """
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return _check_folder(path)

    name = str(path_or_name).strip().strip("/").lower()
    base = name.split("/", 1)[0]
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    if base not in BEIR_DATASETS:
        raise DatasetNotFoundError(
            f"{str(path_or_name)!r} is neither an existing folder (looked for {path.absolute()}) "
            f"nor a known BEIR dataset name (one of: {', '.join(sorted(BEIR_DATASETS))}). "
            "Pass a local BEIR folder containing corpus.jsonl, queries.jsonl and qrels/."
        )

    cached = root / name
    if not (cached / "corpus.jsonl").is_file():
        _download(base, root)
    if not cached.is_dir():
        raise DatasetNotFoundError(f"downloaded {base!r} but {cached} does not exist")
    return _check_folder(cached)


def load_beir(
    path_or_name: str | os.PathLike[str],
    split: str = "test",
    data_root: Path | None = None,
) -> BeirData:
    """Load one split of a BEIR dataset; only queries judged in that split are kept (as BEIR)."""
    from beir.datasets.data_loader import GenericDataLoader

    folder = resolve_dataset(path_or_name, data_root)
    if not (folder / "qrels" / f"{split}.tsv").is_file():
        splits = available_splits(folder)
        raise SplitNotFoundError(
            f"split {split!r} not found in {folder}: no qrels/{split}.tsv "
            f"(available splits: {', '.join(splits) if splits else 'none'})"
        )

    try:
        corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split=split)
    except KeyError as exc:  # BEIR indexes queries by the qrels ids
        raise UserInputError(
            f"qrels/{split}.tsv in {folder} references query id {exc} missing from queries.jsonl"
        ) from exc

    # BEIR leaves a missing title/text as None; downstream code expects strings.
    corpus = {
        str(did): {"title": doc.get("title") or "", "text": doc.get("text") or ""}
        for did, doc in corpus.items()
    }
    return BeirData(
        corpus=corpus,
        queries={str(qid): text for qid, text in queries.items()},
        qrels={str(qid): {str(d): int(s) for d, s in rels.items()} for qid, rels in qrels.items()},
        name=_dataset_name(folder),
        split=split,
        path=folder,
    )


def _dataset_name(folder: Path) -> str:
    """``scifact`` for .../scifact, ``cqadupstack/android`` for a CQADupStack sub-forum."""
    if folder.parent.name == "cqadupstack":
        return f"cqadupstack/{folder.name}"
    return folder.name


def _check_folder(folder: Path) -> Path:
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{folder} is not a BEIR dataset folder: missing {', '.join(missing)} "
            "(expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv)"
        )
    return folder.resolve()


def _download(name: str, root: Path) -> None:
    """Fetch and unzip ``name`` into ``root``; any failure becomes a DatasetNotFoundError."""
    from beir import util as beir_util

    url = BEIR_URL.format(name=name)
    zip_path = root / f"{name}.zip"
    logger.info("downloading BEIR dataset %s from %s", name, url)
    try:
        beir_util.download_and_unzip(url, str(root))
    except Exception as exc:  # requests errors, a bad/partial zip, disk errors, ...
        # beir skips the download when the zip exists, so a partial one would poison retries.
        zip_path.unlink(missing_ok=True)
        raise DatasetNotFoundError(
            f"BEIR dataset {name!r} is not cached in {root} and could not be downloaded from "
            f"{url} ({type(exc).__name__}: {exc}). If this machine is offline, pass a local BEIR "
            "folder (corpus.jsonl, queries.jsonl, qrels/) instead of the name."
        ) from exc
