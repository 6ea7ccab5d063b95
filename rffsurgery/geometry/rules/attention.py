"""Attention blocks."""

from __future__ import annotations

import torch

from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom

__all__ = ["attention"]


def attention(call: Call) -> Geo:
    """Attention over all positions: the output depends on the whole input."""
    found = call.tensor_inputs()
    if not found:
        raise RuleError("attention without traced inputs")
    rank = len(call.out_shape) if isinstance(call.out, torch.Tensor) else found[0][0].rank
    geo = TensorGeom((None,) * rank, global_ctx=True)
    return tuple(geo for _ in call.out) if isinstance(call.out, tuple) else geo
