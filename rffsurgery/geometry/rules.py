"""The one table of geometry rules: op → how it transforms receptive fields.

Supporting a new op is one entry in :data:`TABLE`.  A key is

* an ``nn.Module`` class, or its qualified name as a string
  (``"timm.layers.conv2d_same.Conv2dSame"``) so third-party packages are never
  imported just to analyse a torchvision model;
* a function (``torch.flatten``, ``operator.add``, ``F.interpolate``) or its
  qualified name;
* a tensor method name prefixed with a dot (``".view"``).

A module subclass inherits its base's rule only if it does not override
``forward``: a subclass with its own forward is a different computation and
must have its own entry (otherwise it is reported as unknown, never guessed).

Each rule takes a :class:`~rffsurgery.geometry.call.Call` and returns the output
geometry.  Entries whose output shape is known from their inputs
say so (``Rule.shape``), so shape propagation can skip executing them.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .algebra import AxisMap
from .call import Call, RuleError
from .tensor import Geo, TensorGeom, Track, Unknown, unite

__all__ = ["Rule", "TABLE", "lookup"]

RuleFn = Callable[[Call], Geo]


@dataclass(frozen=True)
class Rule:
    """A geometry rule and what shape propagation may assume about the op's output.

    ``shape``: ``"same"`` — the output has the first argument's shape (norms,
    activations, softmax); ``"broadcast"`` — elementwise, so the output has the
    first argument's shape whenever every tensor argument has it; ``None`` — run it.
    """

    fn: RuleFn
    shape: str | None = None
    name: str = ""


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _tensor_geo(call: Call, index: int = 0, name: str = "input") -> TensorGeom:
    g = call.geo(index, name)
    if not isinstance(g, TensorGeom):
        raise RuleError(f"argument {name!r} is not a traced tensor")
    return g


def _ntuple(value: Any, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(value) * n
        if len(value) != n:
            raise RuleError(f"expected {n} values, got {value!r}")
        return tuple(value)
    return (value,) * n


def _spatial(call: Call, n: int, maps: Iterable[AxisMap | None], g: TensorGeom | None = None) -> TensorGeom:
    """Apply one window map to each of the last ``n`` dims of the input (conv, pool, pad…).

    A ``None`` map leaves a dim as it is.  The channel dim is untouched: an op that
    mixes channels never widens a spatial receptive field.
    """
    g = g or _tensor_geo(call)
    dims = list(g.dims)
    for d, m in zip(range(len(dims) - n, len(dims)), maps):
        t = dims[d]
        if m is None or t is None or t.map is None:
            continue
        dims[d] = Track(t.axis, t.map.then(m))
    return g.with_dims(dims)


def _lose(g: TensorGeom, dims: Iterable[int], keep_collapsed: bool) -> list[Track | None]:
    """Reduce over ``dims``: a reduced spatial dim depends on the whole axis.

    With ``keep_collapsed`` (keepdim, pooling to 1) the dim stays as a collapsed
    track; otherwise it disappears and the axis is global for everything below.
    """
    out = list(g.dims)
    for d in dims:
        t = out[d]
        if t is not None:
            out[d] = Track(t.axis, None) if keep_collapsed else None
    return out


def _norm_dims(dims: Any, rank: int) -> list[int]:
    if dims is None:
        return list(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return sorted(d % rank for d in dims)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Left padding of TensorFlow's 'SAME' (timm's ``pad_same``): output = ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2


# ---------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------
def pointwise(call: Call) -> Geo:
    """Elementwise ops of one or more tensors (activations, norms over channels, add, mul, where)."""
    inputs = call.tensor_inputs()
    if len(inputs) == 1 and inputs[0][1] == call.out_shape:
        return inputs[0][0]  # one tensor, same shape: the geometry passes through unchanged
    result = unite(inputs, call.out_shape)
    call.notes.extend(result.notes)
    return result.geom


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
        _ntuple(call.arg(3, "stride", 1), n),
        call.arg(4, "padding", 0),
        _ntuple(call.arg(5, "dilation", 1), n),
    )


def conv(call: Call) -> Geo:
    """Convolution: window (k, s, p, d) per axis; 'same' pads d·(k−1) with the smaller half left."""
    n, k, s, p, d = _conv_params(call)
    if p == "valid":
        p = (0,) * n
    elif p == "same":
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    p = _ntuple(p, n)
    if call.module is not None and getattr(call.module, "padding_mode", "zeros") != "zeros":
        call.notes.append(f"{call.module.padding_mode} padding: edges reported as if zero-padded")
    return _spatial(call, n, [AxisMap.window(*a) for a in zip(k, s, p, d)])


def same_dynamic(call: Call) -> Geo:
    """timm's *2dSame convs and pools: TensorFlow 'SAME' padding computed from the input size."""
    m = call.module
    k, s_, d = _ntuple(m.kernel_size, 2), _ntuple(m.stride, 2), _ntuple(getattr(m, "dilation", 1), 2)
    maps = [AxisMap.window(ki, si, same_padding(n, ki, si, di), di) for n, ki, si, di in zip(call.in_shape[-2:], k, s_, d)]
    return _spatial(call, 2, maps)


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
        s, p = _ntuple(call.arg(3, "stride", 1), n), _ntuple(call.arg(4, "padding", 0), n)
        d = _ntuple(call.arg(7, "dilation", 1), n)
    return _spatial(call, n, [transposed_map(*a) for a in zip(k, _ntuple(s, n), _ntuple(p, n), _ntuple(d, n))])


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
    k = _ntuple(k, n)
    s = _ntuple(s, n) if s not in (None, (), []) else k
    return [AxisMap.window(*a) for a in zip(k, s, _ntuple(p, n), _ntuple(d, n))]


def pool(n: int, has_dilation: bool = False) -> RuleFn:
    """Max/avg/LP pooling; ``ceil_mode`` only adds a last, partly padded window (shapes carry it)."""

    def rule(call: Call) -> Geo:
        return _spatial(call, n, _pool_params(call, n, has_dilation))

    rule.__doc__ = pool.__doc__
    return rule


def adaptive_map(size_in: int, size_out: int) -> AxisMap | None:
    """Adaptive pooling windows [floor(i·n/o), ceil((i+1)·n/o)); ``None`` when pooling to 1 (global)."""
    if size_out == 1 and size_in > 1:
        return None
    g = math.gcd(size_in, size_out)
    return AxisMap.from_function(
        size_out // g, size_in // g, lambda i: ((i * size_in) // size_out, -((-(i + 1) * size_in) // size_out) - 1)
    )


def _resample(call: Call, n: int, make: Callable[[int, int], AxisMap | None]) -> Geo:
    """Apply a size-dependent map to the last ``n`` dims; a ``None`` map collapses the dim."""
    g = _tensor_geo(call)
    dims = list(g.dims)
    for d, size_in, size_out in zip(range(g.rank - n, g.rank), call.in_shape[-n:], call.out_shape[-n:]):
        t = dims[d]
        if t is None or t.map is None:
            continue
        m = make(size_in, size_out)
        dims[d] = Track(t.axis, None) if m is None else Track(t.axis, t.map.then(m))
    return g.with_dims(dims)


def adaptive_pool(n: int) -> RuleFn:
    def rule(call: Call) -> Geo:
        return _resample(call, n, adaptive_map)

    rule.__doc__ = adaptive_map.__doc__
    return rule


def interpolation_map(mode: str, size_in: int, size_out: int, scale: Fraction, align_corners: bool) -> AxisMap:
    """Which inputs output index u reads, for PyTorch's interpolation modes (exact rationals).

    ``scale`` is input/output, the factor PyTorch uses to find the source coordinate.
    Neighbours with an exactly zero interpolation weight are not read (the gradient
    does not reach them).
    """
    if mode == "area":
        return adaptive_map(size_in, size_out) or AxisMap(1, size_in, (0,), (size_in - 1,))
    if align_corners and mode in ("linear", "bilinear", "bicubic", "trilinear"):
        scale = Fraction(size_in - 1, size_out - 1) if size_out > 1 else Fraction(0)

    def source(u: int) -> Fraction:
        if align_corners:
            return u * scale
        return (u + Fraction(1, 2)) * scale - Fraction(1, 2)

    def phase(u: int) -> tuple[int, int]:
        if mode == "nearest":
            i = math.floor(u * scale)
            return i, i
        if mode == "nearest-exact":
            i = math.floor((u + Fraction(1, 2)) * scale)
            return i, i
        src = source(u)
        i0 = math.floor(src)
        if src == i0:
            return i0, i0
        return (i0 - 1, i0 + 2) if mode == "bicubic" else (i0, i0 + 1)

    if mode not in ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic"):
        raise RuleError(f"interpolation mode {mode!r} has no rule")
    return AxisMap.from_function(scale.denominator, scale.numerator, phase)


def interpolate(call: Call) -> Geo:
    """F.interpolate / nn.Upsample: nearest, nearest-exact, (bi/tri)linear, bicubic, area."""
    m = call.module
    if m is not None:
        scale_factor, mode = m.scale_factor, m.mode
        align = bool(m.align_corners)
        recompute = getattr(m, "recompute_scale_factor", None)
        antialias = False
    else:
        scale_factor = call.arg(2, "scale_factor", None)
        mode = call.arg(3, "mode", "nearest")
        align = bool(call.arg(4, "align_corners", None))
        recompute = call.arg(5, "recompute_scale_factor", None)
        antialias = bool(call.arg(6, "antialias", False))
    g = _tensor_geo(call)
    n = g.rank - 2
    sizes = list(zip(call.in_shape[-n:], call.out_shape[-n:]))
    if antialias and any(o < i for i, o in sizes):
        raise RuleError("antialiased downsampling has no rule")
    if scale_factor is not None and not recompute:
        factors = [Fraction(1) / Fraction(f) for f in _ntuple(scale_factor, n)]
    else:
        factors = [Fraction(i, o) for i, o in sizes]
    maps = iter([interpolation_map(mode, i, o, f, align) for (i, o), f in zip(sizes, factors)])
    return _resample(call, n, lambda i, o: next(maps))


def pad(call: Call) -> Geo:
    """Explicit padding (F.pad, nn.ZeroPad2d/Reflection/Replication/Circular/Constant): a shift.

    Reflection, replication and circular padding read real pixels at the border;
    like Distill we report unclipped edges, which is exact for interior units.
    """
    m = call.module
    amounts = m.padding if m is not None else call.arg(1, "pad")
    g = _tensor_geo(call)
    amounts = _ntuple(amounts, 2 * (g.rank - 2)) if isinstance(amounts, int) else tuple(amounts)
    n = len(amounts) // 2
    lefts = [amounts[2 * (n - 1 - a)] for a in range(n)]  # F.pad lists the last dim first
    mode = m.__class__.__name__ if m is not None else call.arg(2, "mode", "constant")
    if "onstant" not in str(mode) and "Zero" not in str(mode):
        call.notes.append(f"{mode} padding: edges reported as if zero-padded")
    return _spatial(call, n, [AxisMap.window(1, 1, left) for left in lefts])


def pixel_shuffle(call: Call) -> Geo:
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    shuffle = AxisMap.from_function(r, 1, lambda j: (j // r, j // r))
    return _spatial(call, 2, [shuffle, shuffle])


def pixel_unshuffle(call: Call) -> Geo:
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    return _spatial(call, 2, [AxisMap.window(r, r, 0)] * 2)


def reshape(call: Call) -> Geo:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze, from the input and output shapes.

    Dims are matched in row-major order; a spatial dim that survives intact keeps
    its track, one that is merged with or split into other dims loses it (the
    result depends on the whole axis, as after flatten).
    """
    g = _tensor_geo(call, 0, "input")
    src, dst = call.in_shape, call.out_shape
    out: list[Track | None] = [None] * len(dst)
    lost = False
    for gi, gj in _reshape_groups(src, dst):
        if len(gi) == 1 and len(gj) == 1:
            out[gj[0]] = g.dims[gi[0]]
            continue
        lost |= any(g.dims[i] is not None and src[i] > 1 for i in gi)
        lost |= any(g.dims[i] is not None and g.dims[i].map is None for i in gi)
    if lost:
        call.notes.append("reshape merges or splits a spatial dim: that axis becomes global")
    return g.with_dims(out)


def _reshape_groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        if i < len(src) and j < len(dst) and src[i] == dst[j]:
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
        elif i < len(src) and src[i] == 1:
            groups.append(([i], []))
            i += 1
        elif j < len(dst) and dst[j] == 1:
            groups.append(([], [j]))
            j += 1
        else:
            if i >= len(src) or j >= len(dst):
                raise RuleError(f"cannot match shapes {src} and {dst}")
            gi, gj, pa, pb = [i], [j], src[i], dst[j]
            i, j = i + 1, j + 1
            while pa != pb:
                if pa < pb:
                    gi.append(i)
                    pa *= src[i]
                    i += 1
                else:
                    gj.append(j)
                    pb *= dst[j]
                    j += 1
            groups.append((gi, gj))
    return groups


def _method_dims(call: Call) -> list[Any]:
    """Positional ints of ``x.permute(0, 2, 3, 1)`` or ``x.permute((0, 2, 3, 1))``."""
    rest = list(call.args[1:]) or list(call.kwargs.get("dims", ()))
    if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
        rest = list(rest[0])
    return rest


def permute(call: Call) -> Geo:
    g = _tensor_geo(call)
    order = _method_dims(call) if call.node.op == "call_method" else list(call.arg(1, "dims"))
    return g.with_dims(g.dims[d % g.rank] for d in order)


def transpose(call: Call) -> Geo:
    g = _tensor_geo(call)
    a, b = call.arg(1, "dim0") % g.rank, call.arg(2, "dim1") % g.rank
    dims = list(g.dims)
    dims[a], dims[b] = dims[b], dims[a]
    return g.with_dims(dims)


def movedim(call: Call) -> Geo:
    g = _tensor_geo(call)
    src, dst = call.arg(1, "source"), call.arg(2, "destination")
    order = list(range(g.rank))
    src, dst = _norm_dims(src, g.rank), _norm_dims(dst, g.rank)
    rest = [d for d in order if d not in src]
    result: list[int | None] = [None] * g.rank
    for s, d in zip(src, dst):
        result[d] = s
    it = iter(rest)
    order = [r if r is not None else next(it) for r in result]
    return g.with_dims(g.dims[d] for d in order)


def reduce(call: Call) -> Geo:
    """mean/sum/amax/… over dims: reduced spatial dims depend on the whole axis."""
    g = _tensor_geo(call)
    dims = call.arg(1, "dim", None)
    keep = bool(call.arg(2, "keepdim", False))
    out_geo = _reduced(g, _norm_dims(dims, g.rank), keep)
    if isinstance(call.out, tuple):  # x.max(dim) -> (values, indices)
        return tuple(out_geo for _ in call.out)
    return out_geo


def _reduced(g: TensorGeom, dims: list[int], keep: bool) -> TensorGeom:
    tracks = _lose(g, dims, keep_collapsed=keep)
    if not keep:
        tracks = [t for d, t in enumerate(tracks) if d not in dims]
    return g.with_dims(tracks)


def normalise_over(last: Callable[[Call], int]) -> RuleFn:
    """Normalisation over the last ``last(call)`` dims (LayerNorm, RMSNorm, softmax over a dim).

    Over channels it is pointwise; over a spatial dim every unit also depends on
    that whole axis through the statistics, so the local map stays and
    ``global_ctx`` is set.
    """

    def rule(call: Call) -> Geo:
        g = _tensor_geo(call)
        n = last(call)
        spatial = any(t is not None for t in g.dims[g.rank - n :])
        return g.with_dims(g.dims, global_ctx=spatial)

    rule.__doc__ = normalise_over.__doc__
    return rule


def _norm_shape_len(call: Call) -> int:
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    return len(_ntuple(shape, 1)) if not isinstance(shape, int) else 1


def over_dim(call: Call) -> Geo:
    """softmax/log_softmax/cumsum-like ops along one dim."""
    g = _tensor_geo(call)
    dim = call.module.dim if call.module is not None else call.arg(1, "dim")
    if dim is None:
        return g.with_dims(g.dims, global_ctx=True)
    t = g.dims[dim % g.rank]
    return g.with_dims(g.dims, global_ctx=t is not None)


def spatial_norm(call: Call) -> Geo:
    """GroupNorm/InstanceNorm: statistics over the spatial dims, so every unit has global context."""
    g = _tensor_geo(call)
    return g.with_dims(g.dims, global_ctx=True)


def linear(call: Call) -> Geo:
    """Linear layers contract the last dim; a spatial last dim (token mixing) becomes global."""
    g = _tensor_geo(call)
    return g.with_dims(_lose(g, [g.rank - 1], keep_collapsed=False))


def _contract(call: Call, operands: list[tuple[Any, Any, str]], out_letters: str) -> Geo:
    """Tensor contraction in einsum terms: dims named by letters, letters absent from the output are summed.

    Every operand is laid out in the output's letter order (a missing letter is a
    size-1 broadcast dim) and the operands are united: a letter that survives keeps
    its spatial track, a summed spatial letter loses its axis (the output depends
    on the whole axis, or has global context if another operand keeps it local).
    """
    live = []
    for geo, value, letters in operands:
        if not isinstance(geo, TensorGeom):
            continue
        if len(letters) != geo.rank or len(set(letters)) != len(letters):
            raise RuleError(f"cannot match subscripts {letters!r} to a rank-{geo.rank} operand")
        where = {c: d for d, c in enumerate(letters)}
        dims = [geo.dims[where[c]] if c in where else None for c in out_letters]
        shape = tuple(value.shape[where[c]] if c in where else 1 for c in out_letters)
        live.append((geo.with_dims(dims), shape))
    result = unite(live, call.out_shape)
    call.notes.extend(result.notes)
    g = result.geom
    if isinstance(g, TensorGeom):
        axes = [t.axis for t in g.dims if t is not None]
        if len(axes) != len(set(axes)):
            raise RuleError("the product puts one spatial axis in two dims")
    return g


def matmul(call: Call) -> Geo:
    """Matrix products as contractions (``...ij,...jk->...ik``, with 1-D and batch broadcasting).

    A constant right operand is a linear layer (the row dims keep their tracks);
    two input-dependent operands (attention) unite, and a summed spatial dim makes
    the result depend on the whole axis.
    """
    a, b = call.arg(0, "input"), call.arg(1, "other")
    letters = "abcdefghijklmnopqrstuvw"
    batch = max(a.dim(), b.dim()) - 2
    la = letters[max(batch, 0) - max(a.dim() - 2, 0):max(batch, 0)] + ("xy" if a.dim() > 1 else "y")
    lb = letters[max(batch, 0) - max(b.dim() - 2, 0):max(batch, 0)] + ("yz" if b.dim() > 1 else "y")
    out = letters[:max(batch, 0)] + ("x" if a.dim() > 1 else "") + ("z" if b.dim() > 1 else "")
    return _contract(call, [(call.geo(0, "input"), a, la), (call.geo(1, "other"), b, lb)], out)


def einsum(call: Call) -> Geo:
    """torch.einsum with explicit or implicit output and ``...`` broadcasting."""
    equation = call.arg(0, "equation").replace(" ", "")
    values, geos = list(call.args[1:]), list(call.geo_args[1:])
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values, geos = list(values[0]), list(geos[0])
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(values):
        raise RuleError(f"einsum equation {equation!r} names {len(terms)} operands, got {len(values)}")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)
    ellipsis = [next(spare) for _ in range(max(v.dim() for v in values))]
    expanded = []
    for term, value in zip(terms, values):
        n = value.dim() - (len(term) - 3 if "..." in term else len(term))
        expanded.append(term.replace("...", "".join(ellipsis[len(ellipsis) - n:])) if "..." in term else term)
    if arrow:
        width = max((v.dim() - (len(t) - 3) for t, v in zip(terms, values) if "..." in t), default=0)
        out = rhs.replace("...", "".join(ellipsis[len(ellipsis) - width:]))
    else:
        counts = "".join(expanded)
        out = "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c.islower()))
        width = max((v.dim() - (len(t) - 3) for t, v in zip(terms, values) if "..." in t), default=0)
        out = "".join(ellipsis[len(ellipsis) - width:]) + out
    return _contract(call, list(zip(geos, values, expanded)), out)


def attention(call: Call) -> Geo:
    """Attention over all positions: the output depends on the whole input."""
    found = call.tensor_inputs()
    if not found:
        raise RuleError("attention without traced inputs")
    rank = len(call.out_shape) if isinstance(call.out, torch.Tensor) else found[0][0].rank
    geo = TensorGeom((None,) * rank, global_ctx=True)
    return tuple(geo for _ in call.out) if isinstance(call.out, tuple) else geo


def constant(call: Call) -> Geo:
    """Outputs computed from shapes only (positional encodings, grids, ``zeros_like``)."""
    return TensorGeom.constant(len(call.out_shape))


def cat(call: Call) -> Geo:
    """Concatenation of branches: the union of their intervals (must not join along a spatial dim)."""
    dim = call.arg(1, "dim", 0) % len(call.out_shape)
    for g in call.geo(0, "tensors"):
        if isinstance(g, TensorGeom) and g.dims[dim] is not None and not g.const:
            raise RuleError("concatenation along a spatial dim")
    return pointwise(call)


def stack(call: Call) -> Geo:
    dim = call.arg(1, "dim", 0) % len(call.out_shape)
    out_shape = call.out_shape[:dim] + call.out_shape[dim + 1 :]
    result = unite(call.tensor_inputs(), out_shape)
    call.notes.extend(result.notes)
    g = result.geom
    if not isinstance(g, TensorGeom):
        return g
    dims = list(g.dims)
    dims.insert(dim, None)
    return g.with_dims(dims)


def getitem(call: Call) -> Geo:
    """Tuple element, or tensor indexing: slices on a spatial dim crop/stride it exactly."""
    g, index = call.geo(0, "input"), call.arg(1, "index")
    if isinstance(g, (tuple, list)):
        return g[index]
    if not isinstance(g, TensorGeom):
        return g
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        at = index.index(Ellipsis)
        fill = g.rank - (len(index) - 1 - sum(i is None for i in index))
        index = index[:at] + (slice(None),) * fill + index[at + 1 :]
    dims: list[Track | None] = []
    d = 0
    for i in index:
        if i is None:
            dims.append(None)
            continue
        t = g.dims[d]
        size = call.in_shape[d]
        if isinstance(i, slice):
            start, _, step = i.indices(size)
            if t is not None and t.map is not None and (start, step) != (0, 1):
                t = Track(t.axis, t.map.then(AxisMap.window(1, step, -start)))
            dims.append(t)
        elif t is not None:
            raise RuleError("indexing a spatial dim with an integer or tensor")
        elif not isinstance(i, int):
            dims.append(None)  # advanced index on a non-spatial dim keeps one dim
        d += 1
    dims.extend(g.dims[d:])
    return g.with_dims(dims)


def split(call: Call) -> Geo:
    """chunk/split/unbind along a non-spatial dim: every piece keeps the geometry."""
    g = _tensor_geo(call)
    dim = call.arg(2, "dim", 0) if call.node.target not in ("unbind", torch.unbind) else call.arg(1, "dim", 0)
    if g.dims[dim % g.rank] is not None:
        raise RuleError("splitting along a spatial dim")
    return tuple(g for _ in call.out)


def expand(call: Call) -> Geo:
    """expand/expand_as/broadcast_to: new leading dims, and size-1 dims stretched.

    Stretching a collapsed (global) or non-spatial dim is exact; stretching a local
    spatial dim of size 1 would make every position read the same pixel, which no
    periodic map describes.
    """
    g = _tensor_geo(call)
    offset = len(call.out_shape) - g.rank
    for d, (t, n) in enumerate(zip(g.dims, call.in_shape)):
        if t is not None and t.map is not None and n == 1 and call.out_shape[d + offset] != 1:
            raise RuleError("broadcasting a local spatial dim of size 1")
    return g.with_dims([None] * offset + list(g.dims))


def repeat(call: Call) -> Geo:
    """repeat/tile/repeat_interleave: copies along non-spatial dims keep the geometry; tiling space is unknown."""
    g = _tensor_geo(call)
    if len(call.out_shape) < g.rank:
        raise RuleError("repeat that flattens the input")
    offset = len(call.out_shape) - g.rank
    for d, (t, n) in enumerate(zip(g.dims, call.in_shape)):
        if t is not None and call.out_shape[d + offset] != n:
            raise RuleError("tiling along a spatial dim")
    return g.with_dims([None] * offset + list(g.dims))


def sequential_conv_mlp(call: Call) -> Geo:
    """timm vgg ConvMlp: conv(k) → act → dropout → 1×1 conv, pooled first if the input is smaller than k."""
    m = call.module
    k = m.fc1.kernel_size
    if any(n < ki for n, ki in zip(call.in_shape[-2:], k)):
        raise RuleError("ConvMlp pools an input smaller than its kernel")
    return _spatial(call, 2, [AxisMap.window(ki, 1, 0) for ki in k])


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.GLU,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_CHANNEL_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LocalResponseNorm, nn.Identity)
_POINTWISE_FUNCTIONS = (
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.softplus, F.sigmoid, F.tanh, F.logsigmoid, F.prelu,
    F.rrelu, F.glu, F.threshold, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.feature_alpha_dropout, F.batch_norm, F.local_response_norm,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.abs, torch.neg, torch.sqrt,
    torch.rsqrt, torch.clamp, torch.clip, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide,
    torch.maximum, torch.minimum, torch.where, torch.pow, torch.square, torch.erf, torch.sign, torch.floor,
    torch.ceil, torch.round, torch.reciprocal, torch.lerp, torch.addcmul, torch.masked_fill, torch.sin, torch.cos,
    torch.nan_to_num, torch.sigmoid_, torch.exp_, torch.clamp_min, torch.clamp_max,
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, operator.floordiv, operator.neg, operator.pow, operator.abs, operator.and_, operator.or_,
    operator.lt, operator.gt, operator.le, operator.ge, operator.eq, operator.ne, operator.invert,
    torch.Tensor.add, torch.Tensor.mul, "torchvision.ops.stochastic_depth.stochastic_depth",
)
_POINTWISE_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log", "abs", "neg", "sqrt", "rsqrt",
    "clamp", "clamp_", "clip", "clamp_min", "clamp_min_", "clamp_max", "add", "add_", "sub", "sub_", "mul",
    "mul_", "div", "div_", "pow", "square", "contiguous", "to", "type", "type_as", "float", "half", "double",
    "bfloat16", "detach", "clone", "masked_fill", "masked_fill_", "addcmul", "lerp", "sign", "reciprocal",
    "erf", "sin", "cos", "floor", "ceil", "round", "softplus", "hardswish", "gelu", "silu", "zero_", "fill_",
    "requires_grad_", "cpu", "cuda", "bool", "int", "long", "nan_to_num", "maximum", "minimum", "where",
    "sigmoid", "__add__", "__mul__",
)
_RESHAPES = (".view", ".reshape", ".flatten", ".unflatten", ".squeeze", ".unsqueeze", ".view_as", ".reshape_as",
             torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, torch.unflatten, nn.Flatten, nn.Unflatten)
_REDUCTIONS = (".mean", ".sum", ".amax", ".amin", ".max", ".min", ".std", ".var", ".logsumexp", ".norm", ".prod",
               torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std, torch.var,
               torch.logsumexp, torch.norm, torch.prod)

TIMM = "timm.layers."
TABLE: list[tuple[tuple, Rule]] = [
    ((*_ACTIVATIONS, *_DROPOUTS, *_CHANNEL_NORMS, *_POINTWISE_FUNCTIONS,
      *(f".{m}" for m in _POINTWISE_METHODS),
      f"{TIMM}norm_act.BatchNormAct2d", f"{TIMM}norm_act.SyncBatchNormAct", f"{TIMM}norm_act.FrozenBatchNormAct2d",
      f"{TIMM}inplace_abn.InplaceAbn"), Rule(pointwise, shape="broadcast", name="pointwise")),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d, F.conv1d, F.conv2d, F.conv3d), Rule(conv, name="conv")),
    ((f"{TIMM}conv2d_same.Conv2dSame", f"{TIMM}std_conv.StdConv2dSame", f"{TIMM}std_conv.ScaledStdConv2dSame"),
     Rule(same_dynamic, name="conv")),
    ((f"{TIMM}cond_conv2d.CondConv2d",), Rule(cond_conv, name="conv")),
    (("rffsurgery.surgery.layers.ChannelConv3d",), Rule(conv, name="conv")),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, F.conv_transpose1d, F.conv_transpose2d,
      F.conv_transpose3d), Rule(conv_transpose, name="conv_transpose")),
    ((nn.MaxPool1d, F.max_pool1d), Rule(pool(1, has_dilation=True), name="pool")),
    ((nn.MaxPool2d, F.max_pool2d), Rule(pool(2, has_dilation=True), name="pool")),
    ((nn.MaxPool3d, F.max_pool3d), Rule(pool(3, has_dilation=True), name="pool")),
    ((nn.AvgPool1d, F.avg_pool1d, nn.LPPool1d), Rule(pool(1), name="pool")),
    ((nn.AvgPool2d, F.avg_pool2d, nn.LPPool2d), Rule(pool(2), name="pool")),
    ((nn.AvgPool3d, F.avg_pool3d, nn.LPPool3d), Rule(pool(3), name="pool")),
    ((f"{TIMM}pool2d_same.MaxPool2dSame", f"{TIMM}pool2d_same.AvgPool2dSame"), Rule(same_dynamic, name="pool")),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, F.adaptive_avg_pool1d, F.adaptive_max_pool1d),
     Rule(adaptive_pool(1), name="adaptive_pool")),
    ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d),
     Rule(adaptive_pool(2), name="adaptive_pool")),
    ((nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, F.adaptive_avg_pool3d, F.adaptive_max_pool3d),
     Rule(adaptive_pool(3), name="adaptive_pool")),
    ((nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, F.interpolate, F.upsample),
     Rule(interpolate, name="interpolate")),
    ((F.pad, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
      nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
      nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d), Rule(pad, name="pad")),
    ((nn.PixelShuffle, F.pixel_shuffle, torch.pixel_shuffle), Rule(pixel_shuffle, name="pixel_shuffle")),
    ((nn.PixelUnshuffle, F.pixel_unshuffle, torch.pixel_unshuffle), Rule(pixel_unshuffle, name="pixel_unshuffle")),
    (_RESHAPES, Rule(reshape, name="reshape")),
    ((".permute", torch.permute), Rule(permute, name="permute")),
    ((".transpose", torch.transpose, ".swapaxes", torch.swapaxes), Rule(transpose, name="transpose")),
    ((".movedim", torch.movedim), Rule(movedim, name="movedim")),
    (_REDUCTIONS, Rule(reduce, name="reduce")),
    ((nn.LayerNorm, F.layer_norm, nn.RMSNorm, F.rms_norm), Rule(normalise_over(_norm_shape_len), shape="same", name="norm")),
    ((nn.GroupNorm, F.group_norm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, F.instance_norm),
     Rule(spatial_norm, shape="same", name="spatial_norm")),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin, F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax,
      ".softmax", ".log_softmax", torch.cumsum, ".cumsum"), Rule(over_dim, shape="same", name="softmax")),
    ((nn.Softmax2d,), Rule(normalise_over(lambda c: 0), shape="same", name="softmax")),
    ((nn.Linear, F.linear, nn.Bilinear, nn.LazyLinear), Rule(linear, name="linear")),
    ((operator.matmul, torch.matmul, torch.bmm, torch.mm, ".matmul", ".bmm", ".mm"), Rule(matmul, name="matmul")),
    ((torch.einsum,), Rule(einsum, name="einsum")),
    ((nn.MultiheadAttention, F.scaled_dot_product_attention, nn.TransformerEncoderLayer,
      nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.Transformer,
      "timm.models.mobilevit.MobileVitBlock", "timm.models.mobilevit.MobileVitV2Block",
      "timm.models.efficientvit_mit.LiteMLA", "timm.models.convit.GPSA",
      f"{TIMM}non_local_attn.BilinearAttnTransform"), Rule(attention, name="attention")),
    (("timm.models.xcit.PositionalEncodingFourier", "timm.models.edgenext.PositionalEncodingFourier",
      torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like, torch.randn_like,
      ".new_zeros", ".new_ones", ".new_full", ".new_empty"), Rule(constant, name="constant")),
    ((".expand", ".expand_as", ".broadcast_to", torch.broadcast_to), Rule(expand, name="expand")),
    ((".repeat", ".tile", torch.tile, ".repeat_interleave", torch.repeat_interleave), Rule(repeat, name="repeat")),
    ((torch.cat, torch.concat, torch.concatenate), Rule(cat, name="cat")),
    ((torch.stack,), Rule(stack, name="stack")),
    ((operator.getitem,), Rule(getitem, name="getitem")),
    ((torch.chunk, ".chunk", torch.split, ".split", torch.unbind, ".unbind", torch.tensor_split, ".tensor_split"),
     Rule(split, name="split")),
    (("timm.models.vgg.ConvMlp",), Rule(sequential_conv_mlp, name="conv")),
]


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"


def _build() -> tuple[dict, dict, dict]:
    modules: dict[Any, Rule] = {}
    functions: dict[Any, Rule] = {}
    methods: dict[str, Rule] = {}
    for keys, rule in TABLE:
        for key in keys:
            if isinstance(key, str) and key.startswith("."):
                methods.setdefault(key[1:], rule)
            elif isinstance(key, type) and issubclass(key, nn.Module):
                modules.setdefault(key, rule)
            elif isinstance(key, str):
                modules.setdefault(key, rule)
                functions.setdefault(key, rule)
            else:
                functions.setdefault(key, rule)
    return modules, functions, methods


_MODULES, _FUNCTIONS, _METHODS = _build()


def has_module_rule(cls: type) -> bool:
    """Whether modules of class ``cls`` have a geometry rule (so tracing may keep them whole)."""
    return _module_rule(cls) is not None


def lookup_module(module: nn.Module) -> Rule | None:
    """Rule for a module type, inherited only through classes sharing the same ``forward``."""
    return _module_rule(type(module))


def _module_rule(cls: type) -> Rule | None:
    forward = cls.forward
    for base in cls.__mro__:
        if base is nn.Module or "forward" in vars(base) and vars(base)["forward"] is not forward:
            break
        rule = _MODULES.get(base) or _MODULES.get(_qualname(base))
        if rule is not None:
            return rule
    return None


def lookup(op: str, target: Any, module: nn.Module | None) -> Rule | None:
    """The rule for an fx node's op and target, or ``None`` if the op has none."""
    if op == "call_module":
        return lookup_module(module)
    if op == "call_method":
        return _METHODS.get(target)
    if op == "call_function":
        try:
            rule = _FUNCTIONS.get(target)
        except TypeError:  # unhashable target
            rule = None
        return rule or _FUNCTIONS.get(_qualname(target))
    return None
