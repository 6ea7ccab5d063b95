"""Pooling over fixed windows (max, average, LP)."""

from __future__ import annotations

from ..algebra import AxisMap
from ..call import Call
from ..tensor import Geo
from .base import RuleFn, ntuple, spatial

__all__ = ["pool"]


def _pool_params(call: Call, n: int, has_dilation: bool) -> list[AxisMap]:
    m = call.module
    if m is not None:
        k, s = m.kernel_size, m.stride
        p = getattr(m, "padding", 0)
        d = getattr(m, "dilation", 1) if has_dilation else 1
    else:
        k = call.arg(1, "kernel_size")
        s = call.arg(2, "stride", None)
        p = call.arg(3, "padding", 0)
        d = call.arg(4, "dilation", 1) if has_dilation else 1
    k = ntuple(k, n)
    s = ntuple(s, n) if s not in (None, (), []) else k
    return [AxisMap.window(*a) for a in zip(k, s, ntuple(p, n), ntuple(d, n))]


def pool(n: int, has_dilation: bool = False) -> RuleFn:
    """Max/avg/LP pooling; ``ceil_mode`` only adds a last, partly padded window (shapes carry it)."""

    def rule(call: Call) -> Geo:
        return spatial(call, n, _pool_params(call, n, has_dilation))

    rule.__doc__ = pool.__doc__
    return rule
