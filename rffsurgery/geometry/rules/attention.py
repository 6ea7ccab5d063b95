"""Attention blocks.

Scaled dot-product attention, ``nn.MultiheadAttention`` and the transformer encoder
layers are contractions (:mod:`.contraction`): a query token reads itself and every
key/value token its batch dims pair it with.  Over all tokens of an image that is
every unit of both axes — global; over the tokens of a window (the window index
folded into the batch by a ``view``) it is exactly the window, a periodic map.
Masks are not read: a masked key is reported as read, an outer bound.

Other attention modules (MobileViT, ConViT's GPSA…) are taken as global; EfficientViT's
LiteMLA is replayed op by op (:mod:`.replay`): a local query path plus global sums.
"""

from __future__ import annotations

import torch
from torch import nn

from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom
from .contraction import contract

__all__ = ["attention", "multihead_attention", "relative_position_bias", "scaled_dot_product", "transformer_layer"]

_BATCH = "abcdefghijklmnop"


def attention(call: Call) -> Geo:
    """Attention over all positions: the output depends on the whole input."""
    found = call.tensor_inputs()
    if not found:
        raise RuleError("attention without traced inputs")
    rank = len(call.out_shape) if isinstance(call.out, torch.Tensor) else found[0][0].rank
    geo = TensorGeom((None,) * rank, global_ctx=True)
    return tuple(geo for _ in call.out) if isinstance(call.out, tuple) else geo


def _lead(rank: int, width: int) -> str:
    """Batch letters for a tensor of ``rank`` whose last ``width`` dims are named otherwise, right-aligned."""
    return _BATCH[len(_BATCH) - (rank - width):] if rank > width else ""


def scaled_dot_product(call: Call) -> Geo:
    """``F.scaled_dot_product_attention(q, k, v)`` on (…, L, E), (…, S, E), (…, S, Ev) → (…, L, Ev)."""
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    rank = max(q.dim(), k.dim(), v.dim())
    lead = _lead(rank, 2)
    operands = [(call.geo(0, "query"), q, lead[len(lead) - (q.dim() - 2):] + "xd"),
                (call.geo(1, "key"), k, lead[len(lead) - (k.dim() - 2):] + "yd"),
                (call.geo(2, "value"), v, lead[len(lead) - (v.dim() - 2):] + "ye")]
    return contract(call, operands, lead + "xe")


def _sequence_letters(batched: bool, batch_first: bool, seq: str, feature: str) -> str:
    if not batched:
        return seq + feature
    return "n" + seq + feature if batch_first else seq + "n" + feature


def multihead_attention(call: Call) -> Geo:
    """``nn.MultiheadAttention(query, key, value)`` → (output, averaged weights or ``None``)."""
    module: nn.MultiheadAttention = call.module
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    batched, first = q.dim() == 3, module.batch_first
    geos = call.geo(0, "query"), call.geo(1, "key"), call.geo(2, "value")
    letters = [_sequence_letters(batched, first, s, f) for s, f in (("x", "e"), ("y", "f"), ("y", "g"))]
    output = contract(call, list(zip(geos, (q, k, v), letters)), letters[0])
    weights = call.out[1]
    if weights is None:
        return output, None
    scores = ("n" if weights.dim() == 3 else "") + "xy"
    return output, contract(call, list(zip(geos[:2], (q, k), letters[:2])), scores, weights.shape)


def transformer_layer(call: Call) -> Geo:
    """``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder``: self-attention over the sequence, then an MLP."""
    src = call.arg(0, "src")
    module = call.module
    first = getattr(module, "layers", [module])[0].self_attn.batch_first
    g = call.geo(0, "src")
    query = _sequence_letters(src.dim() == 3, first, "x", "e")
    key = _sequence_letters(src.dim() == 3, first, "y", "f")
    return contract(call, [(g, src, query), (g, src, key)], query)


def relative_position_bias(call: Call) -> Geo:
    """torchvision MViT's ``_add_rel_pos(attn, q, …)``: the scores plus a bias each query computes from itself.

    The bias depends on the query token (dim 2 of the scores) and on the relative
    position of the key, a constant: the union of the scores and the query's tokens.
    """
    attn, q = call.arg(0, "attn"), call.arg(1, "q")
    return contract(call, [(call.geo(0, "attn"), attn, "bhxz"), (call.geo(1, "q"), q, "bhxc")], "bhxz")
