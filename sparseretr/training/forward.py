"""Differentiable SPLADE forward for training, on the encoder's own model, head and tokenizer.

Same representation as SpladeEncoder.forward (MLM logits on real tokens, max-pooled per
document, then log1p(ReLU)), but with gradients, and cheap ones: after max-pooling only one
token per (document, term) carries gradient, and only where the pooled logit is positive. So
the hidden -> vocabulary logits (the dominant cost) run once without autograd (in bf16 when
asked) to find the arg-max tokens; only the ~hundreds of positive entries per document are then
recomputed in fp32 with autograd, as dot products of the arg-max token's hidden state with the
term's output embedding. Backward through the head costs O(nnz * hidden) instead of
O(tokens * vocab * hidden); values and gradients equal plain autograd through amax (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

from sparseretr.encoders.splade import SpladeEncoder
from sparseretr.losses import splade_activation

Tensor = torch.Tensor
HeadParts = tuple[Callable[[Tensor], Tensor], Tensor, Tensor]


def split_head(head: nn.Module) -> HeadParts | None:
    """(transform, output weight [V, H], output bias [V]) of an MLM head, or None if unknown."""
    pred = getattr(head, "predictions", None)
    if pred is not None and hasattr(pred, "transform") and hasattr(pred, "decoder"):  # BERT
        bias = pred.decoder.bias if pred.decoder.bias is not None else pred.bias
        return pred.transform, pred.decoder.weight, bias
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):  # DistilBERT
        return head[:-1], head[-1].weight, head[-1].bias
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _doc_chunks(lengths: Sequence[int], budget: int) -> list[tuple[int, int, int, int]]:
    """(first doc, end doc, first token, n tokens): whole documents, ~budget tokens per chunk."""
    out, doc, tok = [], 0, 0
    while doc < len(lengths):
        end, n = doc, 0
        while end < len(lengths) and (end == doc or n + lengths[end] <= budget):
            n += lengths[end]
            end += 1
        out.append((doc, end, tok, n))
        doc, tok = end, tok + n
    return out


def pooled_logits(
    encoder: SpladeEncoder,
    batch: Sequence[Sequence[int]],
    *,
    dtype: torch.dtype | None = None,
    exact_grad_path: bool = False,
) -> Tensor:
    """Token id lists -> [B, V] ReLU(max over real tokens of the MLM logits), differentiable.

    dtype: autocast dtype for the transformer and the arg-max search (None = fp32).
    exact_grad_path: plain autograd through the full logits (the reference; memory-hungry).
    """
    device = encoder.device
    padded = encoder.tokenizer.pad({"input_ids": list(batch)}, return_tensors="pt")
    input_ids = padded["input_ids"].to(device)
    mask = padded["attention_mask"].to(device)
    lengths = mask.sum(1).tolist()
    n_docs, vocab = len(lengths), encoder.vocab_size
    parts = None if exact_grad_path else split_head(encoder.head)
    with _autocast(device, dtype):
        hidden = encoder.model.base_model(input_ids=input_ids, attention_mask=mask)[0]
        packed = hidden[mask.bool()]  # [tokens, H], documents contiguous
        if parts is None:
            logits = encoder.head(packed).float()
            pooled = torch.stack([c.amax(0) for c in logits.split(lengths)])
            return torch.relu(pooled)
        transform, weight, bias = parts
        z = transform(packed)
    best = torch.empty(n_docs, vocab, device=device)
    arg = torch.empty(n_docs, vocab, dtype=torch.long, device=device)
    with torch.no_grad(), _autocast(device, dtype):
        for d0, d1, t0, n in _doc_chunks(lengths, encoder.tokens_per_chunk):
            logits = nn.functional.linear(z[t0 : t0 + n], weight, bias)
            offset = t0
            for j, chunk in enumerate(logits.split(lengths[d0:d1]), start=d0):
                v, i = chunk.max(0)
                best[j], arg[j] = v.float(), i + offset
                offset += lengths[j]
    rows, cols = torch.nonzero(best > 0, as_tuple=True)
    tok = arg[rows, cols]
    vals = (z[tok].float() * weight[cols].float()).sum(-1) + bias[cols].float()
    out = torch.zeros(n_docs, vocab, device=device, dtype=vals.dtype)
    return out.index_put((rows, cols), torch.relu(vals))


def encode_for_training(
    encoder: SpladeEncoder,
    batch: Sequence[Sequence[int]],
    *,
    activation: str = "log1p",
    dtype: torch.dtype | None = None,
) -> Tensor:
    """[B, V] SPLADE weights with gradients (activation as in losses.splade_activation)."""
    return splade_activation(pooled_logits(encoder, batch, dtype=dtype), activation)
