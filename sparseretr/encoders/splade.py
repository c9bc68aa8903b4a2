"""SPLADE: MLM logits -> log(1 + ReLU) -> max-pool over real tokens, one vocabulary-sized vector.

CPU time is dominated by the hidden -> vocabulary projection, so the batch is sorted by length
and padded per batch, and the projection never materializes [tokens, vocabulary] logits. It runs
on the real tokens only, packed (no padding rows), in tiles small enough to stay in a core's L2
cache (512 tokens x 512 vocabulary entries, 1 MiB in fp32), each max-pooled per document while
it is still there. The weight is cut into those tiles once, transposed and contiguous: a strided
transposed view multiplied slower. The bias is added after the max, which is exact, because
adding a constant is monotone in floating point as in arithmetic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from sparseretr.encoders._torch import inference, pick_device, resolve_dtype
from sparseretr.encoders.base import SparseEncoder
from sparseretr.encoders.st_layout import read_st_layout
from sparseretr.index.errors import UserInputError
from sparseretr.index.vectors import SparseVectors
from sparseretr.models import DEFAULT_SPLADE, model_in_state, resolve_model, save_model_in_state


def mlm_head(model: nn.Module) -> nn.Module:
    """The module mapping last hidden states to vocabulary logits, for the families we know."""
    if hasattr(model, "cls"):  # BERT-style (BertForMaskedLM and relatives)
        return model.cls
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return nn.Sequential(
            model.vocab_transform, model.activation, model.vocab_layer_norm, model.vocab_projector
        )
    if hasattr(model, "lm_head"):  # RoBERTa / XLM-R style
        return model.lm_head
    raise ValueError(f"unsupported masked-LM architecture: {type(model).__name__}")


def split_head(head: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(hidden -> transformed hidden, the vocabulary projection) of an MLM head, or None when
    its layout is unknown (the encoder then runs the head whole)."""
    if hasattr(head, "predictions"):  # BertOnlyMLMHead
        return head.predictions.transform, head.predictions.decoder
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):  # DistilBERT
        return head[:-1], head[-1]
    if all(hasattr(head, a) for a in ("dense", "layer_norm", "decoder")):  # RoBERTa
        from transformers.activations import gelu

        return nn.Sequential(head.dense, _Fn(gelu), head.layer_norm), head.decoder
    return None


class _Fn(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


ACTIVATIONS = ("log1p", "log1p_log1p")
ACTIVATION_FILE = "sparseretr_config.json"  # written next to a model by training/export.py


def folder_settings(path: Path) -> dict[str, Any]:
    """A model folder's sparseretr_config.json (written by training/export.py), else {}."""
    f = Path(path) / ACTIVATION_FILE
    if not f.is_file():
        return {}
    try:
        settings = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read {f}: {e}") from e
    if not isinstance(settings, dict):
        raise UserInputError(f"{f} must hold a JSON object")
    return settings


# Projection tiles (module notes): L2-sized on CPU; on a GPU, large enough to fill it.
CPU_TILES = (512, 512)  # (tokens, vocabulary entries)
GPU_TILES = (16384, 32768)


def dense_to_sparse(vecs: torch.Tensor, top_k: int | None, threshold: float) -> sp.csr_matrix:
    """Keep weights > threshold (and only each row's top_k when set) as a CSR matrix."""
    vecs = vecs.float()
    if top_k is not None and top_k < vecs.shape[1]:
        vals, idx = vecs.topk(top_k, dim=1)
        kept = torch.zeros_like(vecs).scatter_(1, idx, vals)
        vecs = kept
    rows, cols = torch.nonzero(vecs > threshold, as_tuple=True)
    data = vecs[rows, cols]
    return sp.csr_matrix(
        (data.cpu().numpy(), (rows.cpu().numpy(), cols.cpu().numpy())), shape=tuple(vecs.shape)
    )


class SpladeEncoder(SparseEncoder):
    """Siamese SPLADE: the same masked-LM encodes queries and documents."""

    kind = "splade"

    def __init__(
        self,
        model: str = DEFAULT_SPLADE,
        *,
        max_length: int = 512,
        query_max_length: int = 512,
        batch_size: int = 32,
        top_k: int | None = None,
        threshold: float = 0.0,
        device: str | None = None,
        dtype: str | None = None,
        tokens_per_chunk: int = 4096,
        activation: str | None = None,
    ) -> None:
        """activation: "log1p" (SPLADE's log(1 + ReLU)) or "log1p_log1p" (applied twice, as
        some models are trained); None reads it from the model folder's
        sparseretr_config.json, written by our exporter, else "log1p"."""
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.model_ref = str(model)
        # A sentence-transformers SparseEncoder folder keeps its MLM in `layout.transformer`;
        # `root` is the folder the user named, where idf.json and sparseretr_config.json live.
        self.layout = layout = read_st_layout(model)
        path = layout.transformer if layout else resolve_model(model)
        self.root = root = Path(model).expanduser() if layout else path
        # Ours (sparseretr_config.json), else the folder's SpladePooling, else SPLADE's log1p.
        self.activation = str(
            activation
            or folder_settings(root).get("activation")
            or (layout.activation if layout else None)
            or "log1p"
        )
        if self.activation not in ACTIVATIONS:
            raise UserInputError(
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.device = pick_device(device)
        self.autocast = resolve_dtype(self.device, dtype)
        self.dtype_name = dtype
        self.model = AutoModelForMaskedLM.from_pretrained(path).eval().to(self.device)
        self.head = mlm_head(self.model)
        self.split = split_head(self.head)
        self.vocab_size = int(self.model.config.vocab_size)
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.batch_size = batch_size
        self.top_k = top_k
        self.threshold = threshold
        self.tokens_per_chunk = tokens_per_chunk

    # -- the contract ---------------------------------------------------------------------
    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> SparseVectors:
        return self._encode(
            texts,
            self.max_length,
            batch_size or self.batch_size,
            self.top_k,
            self.threshold,
            show_progress,
        )

    def encode_queries(self, texts: Sequence[str]) -> SparseVectors:
        return self._encode(texts, self.query_max_length, self.batch_size, None, 0.0, False)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model_ref,
            "max_length": self.max_length,
            "query_max_length": self.query_max_length,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "activation": self.activation,
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], state_dir: Path | None = None, **overrides: Any
    ) -> Self:
        opts = {
            k: config[k]
            for k in ("max_length", "query_max_length", "top_k", "threshold")
            if k in config
        }
        # An index records the activation it was built with; older ones had only log1p.
        opts["activation"] = config.get("activation", "log1p")
        return cls(model_in_state(config, state_dir), **opts, **overrides)

    def save_state(self, folder: Path) -> None:
        save_model_in_state(self.model_ref, folder)

    # -- the work -------------------------------------------------------------------------
    def token_ids(
        self, texts: Sequence[str], max_length: int | None, special: bool
    ) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("pass a sequence of strings, not a single string")
        if len(texts) == 0:
            return []
        return self.tokenizer(
            list(texts),
            truncation=max_length is not None,
            max_length=max_length,
            add_special_tokens=special,
            verbose=False,  # corpus IDF reads whole documents; no "longer than 512" warnings
        )["input_ids"]

    def _encode(
        self,
        texts: Sequence[str],
        max_length: int,
        batch_size: int,
        top_k: int | None,
        threshold: float,
        show_progress: bool,
    ) -> SparseVectors:
        ids = self.token_ids(texts, max_length, special=True)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        parts = []
        batches = range(0, len(ids), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        for start in batches:
            batch = [ids[i] for i in order[start : start + batch_size]]
            parts.append(dense_to_sparse(self.forward(batch), top_k, threshold))
        if not parts:
            return SparseVectors.from_scipy(sp.csr_matrix((0, self.vocab_size)), self.vocab_size)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return SparseVectors.from_scipy(sp.vstack(parts).tocsr()[inverse], self.vocab_size)

    def forward(self, batch: list[list[int]]) -> torch.Tensor:
        """Token id lists -> [B, vocab] SPLADE weights (dense; the caller sparsifies)."""
        padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        input_ids = padded["input_ids"].to(self.device)
        mask = padded["attention_mask"].to(self.device)
        with inference(self.device, self.autocast):
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=mask)[0]
            if self.split is not None:
                out = self._tiled_max(hidden, mask)
            else:
                out = self._chunked_max(hidden, mask)
            # log1p(relu(.)) is monotonic, so it commutes with the max-pool: apply it once per doc.
            weights = torch.log1p(torch.relu(out.float()))
            return torch.log1p(weights) if self.activation == "log1p_log1p" else weights

    def _tiled_max(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, vocab] max over each document's real tokens of the vocabulary logits, tile by
        tile (module notes)."""
        assert self.split is not None
        transform, decoder = self.split
        real = mask.bool()
        x = transform(hidden[real])  # [tokens, H], documents contiguous in batch order
        lengths = real.sum(1).tolist()
        starts = [0]
        for n in lengths:
            starts.append(starts[-1] + n)
        token_tile, _ = GPU_TILES if x.device.type == "cuda" else CPU_TILES
        out = torch.full((len(lengths), self.vocab_size), -torch.inf, device=x.device)
        tiles = self._weight_tiles(decoder.weight)
        doc = 0
        for t0 in range(0, starts[-1], token_tile):
            t1 = min(t0 + token_tile, starts[-1])
            while starts[doc + 1] <= t0:
                doc += 1
            last = doc
            while starts[last + 1] < t1:
                last += 1
            # (document, first row, end row) of each document's part of this token tile
            parts = [(d, max(starts[d], t0) - t0, min(starts[d + 1], t1) - t0)
                     for d in range(doc, last + 1) if starts[d + 1] > starts[d]]  # fmt: skip
            xs = x[t0:t1]
            for v0, w in tiles:
                logits = xs @ w
                block = out[:, v0 : v0 + w.shape[1]]
                for d, a, b in parts:
                    torch.maximum(block[d], logits[a:b].amax(0), out=block[d])
        return out if decoder.bias is None else out + decoder.bias

    def _weight_tiles(self, weight: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The projection weight as (first vocabulary id, [H, tile] contiguous) tiles, cut once
        and again only when the weight changes (training updates it in place)."""
        key = (weight.data_ptr(), weight._version, weight.device)
        if getattr(self, "_tiles_key", None) != key:
            _, vocab_tile = GPU_TILES if weight.device.type == "cuda" else CPU_TILES
            self._tiles = [
                (v0, weight[v0 : v0 + vocab_tile].T.contiguous())
                for v0 in range(0, weight.shape[0], vocab_tile)
            ]
            self._tiles_key = key
        return self._tiles

    def _chunked_max(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The head run whole on real tokens, whole documents per chunk: for MLM heads
        split_head does not know."""
        packed = hidden[mask.bool()]  # [tokens, H], documents contiguous in order
        lengths = mask.sum(1).tolist()
        out = torch.empty(len(lengths), self.vocab_size, device=hidden.device)
        doc = 0
        while doc < len(lengths):
            end, budget = doc, 0
            while end < len(lengths) and (
                end == doc or budget + lengths[end] <= self.tokens_per_chunk
            ):
                budget += lengths[end]
                end += 1
            first = sum(lengths[:doc])
            logits = self.head(packed[first : first + budget])
            for j, chunk in enumerate(logits.float().split(lengths[doc:end]), start=doc):
                out[j] = chunk.amax(0)
            doc = end
        return out
