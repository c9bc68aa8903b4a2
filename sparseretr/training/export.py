"""Write a trained model as a folder that our encoders and sentence-transformers both load.

Root: save_pretrained weights + tokenizer (what SpladeEncoder / InferenceFreeEncoder read),
idf.json (inference-free), sparseretr_config.json (which encoder, which activation). When the
installed sentence-transformers has SparseEncoder, its own save() adds its layout: for siamese
models modules.json over the root weights (Transformer fill-mask + SpladePooling); for
inference-free models a query/document Router (SparseStaticEmbedding with the IDF weights;
the document Transformer in a sub-folder, a second copy of the weights, since a Router keeps
each route's modules in their own folders).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from sparseretr.encoders.inference_free import InferenceFreeEncoder
from sparseretr.encoders.splade import ACTIVATION_FILE, SpladeEncoder

logger = logging.getLogger(__name__)

CONFIG_FILE = ACTIVATION_FILE  # sparseretr_config.json: the encoder reads "activation" back
ST_ACTIVATION = {"log1p": "relu", "log1p_log1p": "log1p_relu"}  # SpladePooling's names


def export_model(
    encoder: SpladeEncoder | InferenceFreeEncoder,
    folder: str | Path,
    *,
    activation: str = "log1p",
    info: dict[str, Any] | None = None,
    st_layout: bool = True,
) -> Path:
    """Save `encoder` (its current model and, inference-free, its .idf) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inference_free = isinstance(encoder, InferenceFreeEncoder)
    splade = encoder.doc_encoder if inference_free else encoder
    splade.model.save_pretrained(folder)
    splade.tokenizer.save_pretrained(folder)
    if inference_free:
        if encoder.idf is None:
            raise ValueError("an inference-free model needs its IDF vector to be exported")
        encoder.save_state(folder)  # idf.json: the whole query model
    config = {
        "encoder": encoder.kind,  # "splade" (siamese) or "inference-free"
        "activation": activation,
        "max_length": splade.max_length,
        "query_max_length": splade.query_max_length,
        "vocab_size": splade.vocab_size,
        # The document-side lexical prior (inference-free): our encoders add it when they load
        # this folder; sentence-transformers' layout holds the learned weights only.
        "lexical": encoder.lexical.to_dict() if inference_free and encoder.lexical else None,
        **(info or {}),
    }
    st = False
    if st_layout:
        st = write_st_layout(
            folder,
            idf=encoder.idf if inference_free else None,
            activation=activation,
            max_length=splade.max_length,
        )
    config["sentence_transformers_layout"] = st
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    return folder


def write_st_layout(
    folder: Path,
    *,
    idf: np.ndarray | None,
    activation: str,
    max_length: int,
) -> bool:
    """sentence-transformers' SparseEncoder files, written by its own save(); False if absent."""
    try:
        import torch
        from sentence_transformers import SparseEncoder
        from sentence_transformers.base.modules import Router, Transformer
        from sentence_transformers.sparse_encoder.modules import (
            SparseStaticEmbedding,
            SpladePooling,
        )
    except ImportError as e:
        logger.warning("sentence-transformers has no SparseEncoder (%s): layout not written", e)
        return False
    doc = [
        Transformer(str(folder), transformer_task="fill-mask", max_seq_length=max_length),
        SpladePooling("max", activation_function=ST_ACTIVATION[activation]),
    ]
    if idf is None:
        modules = doc
    else:
        query = SparseStaticEmbedding(
            tokenizer=doc[0].tokenizer, weight=torch.tensor(idf, dtype=torch.float32), frozen=True
        )
        modules = [Router.for_query_document(query_modules=[query], document_modules=doc)]
    SparseEncoder(modules=modules, similarity_fn_name="dot", device="cpu").save(str(folder))
    return True
