"""Sliding windows with weights: convolutions, their transposes, timm's dynamic 'SAME' variants, explicit padding."""

from __future__ import annotations

import math
from typing import Any

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, has_factors
from ..tensor import Geo, TensorGeom
from .base import bound, ntuple, spatial, tensor_geo

__all__ = [
    "cond_conv", "conv", "conv_transpose", "pad", "same_dynamic", "same_padding", "sequential_conv_mlp",
    "transposed_map"
]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Left padding of TensorFlow's 'SAME' (timm's ``pad_same``): output = ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2


def _conv_params(call: Call) -> tuple[int, tuple, tuple, Any, tuple]:
    m = call.module
    if m is not None:
        n = len(m.kernel_size)
        return n, m.kernel_size, m.stride, m.padding, m.dilation
    weight = call.arg(1, "weight")
    n = weight.dim() - 2
    return (
        n,
        tuple(weight.shape[2:]),
        ntuple(call.arg(3, "stride", 1), n),
        call.arg(4, "padding", 0),
        ntuple(call.arg(5, "dilation", 1), n),
    )


def _groups(call: Call, index: int) -> int:
    """The conv's channel groups (``index``: their position in the functional form's arguments)."""
    m = call.module
    return getattr(m, "groups", 1) if m is not None else call.arg(index, "groups", 1)


def conv(call: Call) -> Geo:
    """Convolution: window (k, s, p, d) per axis; 'same' pads d·(k−1) with the smaller half left."""
    n, k, s, p, d = _conv_params(call)
    if p == "valid":
        p = (0,) * n
    elif p == "same":
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    p = ntuple(p, n)
    if call.module is not None and getattr(call.module, "padding_mode", "zeros") != "zeros":
        call.notes.append(f"{call.module.padding_mode} padding: edges reported as if zero-padded")
    return spatial(call, n, [AxisMap.window(*a) for a in zip(k, s, p, d)], groups=_groups(call, 6))


def same_dynamic(call: Call) -> Geo:
    """timm's *2dSame convs and pools: TensorFlow 'SAME' padding computed from the input size."""
    m = call.module
    k, s_, d = ntuple(m.kernel_size, 2), ntuple(m.stride, 2), ntuple(getattr(m, "dilation", 1), 2)
    maps = [AxisMap.window(ki, si, same_padding(n, ki, si, di), di) for n, ki, si, di in zip(call.in_shape[-2:], k, s_, d)]
    return spatial(call, 2, maps, groups=getattr(m, "groups", None))


def cond_conv(call: Call) -> Geo:
    """timm's CondConv2d: a conv whose padding is static or TF-'SAME'."""
    return same_dynamic(call) if getattr(call.module, "dynamic_padding", False) else conv(call)


def conv_transpose(call: Call) -> Geo:
    """Transposed convolution: output u reads input i where u = i·s − p + j·d (stride below 1)."""
    m = call.module
    if m is not None:
        n, k, s, p, d = len(m.kernel_size), m.kernel_size, m.stride, m.padding, m.dilation
    else:
        weight = call.arg(1, "weight")
        n = weight.dim() - 2
        k = tuple(weight.shape[2:])
        s, p = ntuple(call.arg(3, "stride", 1), n), ntuple(call.arg(4, "padding", 0), n)
        d = ntuple(call.arg(7, "dilation", 1), n)
    maps = [transposed_map(*a) for a in zip(k, ntuple(s, n), ntuple(p, n), ntuple(d, n))]
    return spatial(call, n, maps, groups=_groups(call, 6))


def transposed_map(kernel: int, stride: int, padding: int, dilation: int) -> AxisMap:
    def phase(u: int) -> tuple[int, int]:
        reads = [(u + padding - j * dilation) // stride for j in range(kernel) if (u + padding - j * dilation) % stride == 0]
        if not reads:
            raise RuleError(
                f"transposed conv (k={kernel}, s={stride}, d={dilation}) leaves output phase {u} unconnected"
            )
        return min(reads), max(reads)

    m = AxisMap.from_function(stride, 1, phase)
    if not m.monotone():
        # e.g. k=3, s=3, d=2: output 24 reads input 8, output 25 reads input 7.  A later
        # layer's interval over these outputs is not bounded by its end units' reads, and
        # its dilation (unknown to the composed maps) would decide which ones it skips.
        raise RuleError(f"transposed conv (k={kernel}, s={stride}, d={dilation}) reads the input out of order")
    return m


def pad(call: Call) -> Geo:
    """Explicit padding (F.pad, nn.ZeroPad2d/Reflection/Replication/Circular/Constant): a shift.

    Reflection, replication and circular padding read real pixels at the border;
    like Distill we report unclipped edges, which is exact for interior units.
    """
    m = call.module
    amounts = m.padding if m is not None else call.arg(1, "pad")
    g = tensor_geo(call)
    amounts = ntuple(amounts, 2 * (g.rank - 2)) if isinstance(amounts, int) else tuple(amounts)
    n = len(amounts) // 2
    lefts = [amounts[2 * (n - 1 - a)] for a in range(n)]  # F.pad lists the last dim first
    mode = m.__class__.__name__ if m is not None else call.arg(2, "mode", "constant")
    if "onstant" not in str(mode) and "Zero" not in str(mode):
        call.notes.append(f"{mode} padding: edges reported as if zero-padded")
    if has_factors(g):
        return _pad_factors(call, g, [(amounts[2 * (n - 1 - a)], amounts[2 * (n - 1 - a) + 1]) for a in range(n)])
    return spatial(call, n, [AxisMap.window(1, 1, left) for left in lefts])


def _pad_factors(call: Call, g: TensorGeom, amounts: list[tuple[int, int]]) -> TensorGeom:
    """Padding dims that carry factors: a dim of one digit shifts; a dim of several (tokens) gets extra elements.

    CoaT pads its token dim by the class token's place: the new elements hold no
    unit, like a class token concatenated in front.
    """
    spread = Spread.of(g, call.in_shape)
    for k, (left, right) in zip(range(g.rank - len(amounts), g.rank), amounts):
        if not spread.axes_in(k) or (left, right) == (0, 0):
            continue
        if spread.slide(k, AxisMap.window(1, 1, left), call.out_shape[k]):
            continue
        if left >= 0 and right >= 0:
            spread.lead[k] += left
            spread.trail[k] += right
        else:
            bound(call, "cropping a dim that merges factors", spread, spread.axes_in(k))
    return spread.geom(g, call.out_shape)


def sequential_conv_mlp(call: Call) -> Geo:
    """timm vgg ConvMlp: conv(k) → act → dropout → 1×1 conv, pooled first if the input is smaller than k."""
    m = call.module
    k = m.fc1.kernel_size
    if any(n < ki for n, ki in zip(call.in_shape[-2:], k)):
        raise RuleError("ConvMlp pools an input smaller than its kernel")
    return spatial(call, 2, [AxisMap.window(ki, 1, 0) for ki in k], groups=m.fc1.groups)
