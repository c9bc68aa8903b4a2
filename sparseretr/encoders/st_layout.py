"""Read a sentence-transformers SparseEncoder folder without sentence-transformers.

Users arrive with models saved by sentence-transformers: a siamese SPLADE folder (modules.json:
a fill-mask Transformer in the root + SpladePooling) or an inference-free one (a Router whose
query route is a SparseStaticEmbedding holding one weight per token id, and whose document
route is a fill-mask Transformer in its own sub-folder + SpladePooling). What our encoders
need from it: where the MLM weights and tokenizer are, which activation the pooling applies,
the query weights of a static route, and the document max length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.index.errors import UserInputError

# SpladePooling's activation names -> ours (encoders/splade.py ACTIVATIONS)
ACTIVATIONS = {"relu": "log1p", "log1p_relu": "log1p_log1p"}


@dataclass(frozen=True)
class STLayout:
    transformer: Path  # folder with the MLM's config.json, weights and tokenizer
    activation: str | None  # ours; None when no SpladePooling config says
    query_weights: Path | None  # a SparseStaticEmbedding's safetensors (inference-free)
    max_length: int | None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read {path}: {e}") from e


def _modules(folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """route -> [(module class name, folder)]; a plain pipeline is one route, "document"."""
    entries = _json(folder / "modules.json")
    if not isinstance(entries, list):
        raise UserInputError(f"{folder / 'modules.json'} must hold a list of modules")
    if len(entries) == 1 and str(entries[0].get("type", "")).endswith("Router"):
        router = folder / entries[0].get("path", "")
        config = _json(router / "router_config.json")
        types, structure = config.get("types", {}), config.get("structure", {})
        return {
            route: [(str(types.get(name, "")).rsplit(".", 1)[-1], router / name) for name in names]
            for route, names in structure.items()
        }
    route = [
        (str(e.get("type", "")).rsplit(".", 1)[-1], folder / e.get("path", "")) for e in entries
    ]
    return {"document": route}


def read_st_layout(model: str | Path) -> STLayout | None:
    """The layout of a local sentence-transformers SparseEncoder folder, else None."""
    folder = Path(model).expanduser()
    if not (folder / "modules.json").is_file():
        return None
    routes = _modules(folder)
    document = routes.get("document", [])
    transformer = next((p for cls, p in document if cls in ("Transformer", "MLMTransformer")), None)
    if transformer is None or not (transformer / "config.json").is_file():
        raise UserInputError(
            f"{folder} is a sentence-transformers folder without a fill-mask Transformer on its "
            "document route: not a SPLADE model"
        )
    pooling = next((p for cls, p in document if cls == "SpladePooling"), None)
    activation = None
    if pooling is not None and (pooling / "config.json").is_file():
        pool = _json(pooling / "config.json")
        if pool.get("pooling_strategy", "max") != "max":
            raise UserInputError(f"{pooling}: only max pooling is supported")
        name = pool.get("activation_function", "relu")
        if name not in ACTIVATIONS:
            raise UserInputError(f"{pooling}: unsupported activation {name!r}")
        activation = ACTIVATIONS[name]
    static = next((p for cls, p in routes.get("query", []) if cls == "SparseStaticEmbedding"), None)
    weights = static / "model.safetensors" if static is not None else None
    return STLayout(transformer, activation, weights, _max_length(transformer))


def _max_length(transformer: Path) -> int | None:
    """sentence_bert_config.json's max_seq_length (older saves), else the tokenizer's."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):  # fmt: skip
        f = transformer / name
        if f.is_file():
            value = _json(f).get(key)
            if isinstance(value, int) and 0 < value < 100_000:
                return value
    return None


def static_query_weights(path: Path, vocab_size: int) -> np.ndarray:
    """A SparseStaticEmbedding's weight vector: entry i weighs token id i."""
    from safetensors.numpy import load_file

    try:
        weight = load_file(str(path))["weight"]
    except (OSError, KeyError, ValueError) as e:
        raise UserInputError(f"cannot read the query weights in {path}: {e}") from e
    if weight.shape != (vocab_size,):
        raise UserInputError(f"{path}: {weight.shape} query weights for a {vocab_size} vocabulary")
    return np.clip(weight.astype(np.float32), 0, None)
