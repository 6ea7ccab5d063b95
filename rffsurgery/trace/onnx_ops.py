"""The table of ONNX operators → torch calls that the ONNX front end (:mod:`.onnx`) emits.

Each entry of :data:`OPS` turns one ONNX node into torch functions the geometry rules
already know (``F.conv2d``, ``F.max_pool2d``, ``torch.permute``, ``operator.add`` …), so
one engine and one rules table serve PyTorch models and ONNX files alike.  A converter
gets an :class:`OnnxNode`-like context (attributes, inputs as graph values, inputs whose
value is known at conversion time as numpy arrays, meta shapes) and returns the graph
value of each ONNX output.  It raises :class:`Unsupported` for a form it cannot describe
exactly (pads computed at run time, a coordinate mode without a rule); the node is then
reported as unknown with that reason, and never guessed.

Semantics that differ between ONNX and PyTorch are resolved here: ONNX pads are
``[begin…, end…]`` and may be asymmetric (TensorFlow's 'SAME': an explicit ``F.pad``
before the op); ``auto_pad`` SAME_UPPER/SAME_LOWER pads are computed from the input
size; ONNX pooling strides default to 1 (PyTorch's to the kernel); ONNX Resize has
coordinate transformations PyTorch lacks, so it is :func:`interpolate`, a function with its
own entry in the rules table.  Every floating type runs as float32: only shapes matter.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["OPS", "Unsupported", "interpolate", "opaque"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_GAVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_GMAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}
DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
          9: torch.bool, 10: torch.float32, 11: torch.float32, 16: torch.float32}


class Unsupported(Exception):
    """This form of the op has no exact torch equivalent; the message says which (it becomes the node's reason)."""


class Node(Protocol):
    """What a converter sees of one ONNX node (implemented by :class:`rffsurgery.trace.onnx._Node`)."""

    op: str
    opset: int
    n_inputs: int
    n_outputs: int

    def attr(self, name: str, default: Any = None) -> Any: ...
    def has(self, i: int) -> bool: ...
    def x(self, i: int) -> Any: ...
    def value(self, i: int, what: str) -> np.ndarray: ...
    def shape(self, i: int) -> tuple[int, ...]: ...
    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any: ...
    def method(self, name: str, *args: Any) -> Any: ...
    def outputs_used(self) -> list[bool]: ...


def opaque(label: str, shapes: Sequence[tuple[int, ...] | None], dtypes: Sequence[torch.dtype]) -> Callable:
    """A stand-in for a node without a rule: returns meta tensors of the shapes ONNX inferred (empty if unknown).

    Its name (``"ONNX TopK"``) is what the analysis reports: no geometry rule for it.
    """

    def op(*inputs: Any) -> Any:
        outs = tuple(torch.empty(s if s is not None else (0,), dtype=d, device="meta") for s, d in zip(shapes, dtypes))
        return outs[0] if len(outs) == 1 else outs

    op.__name__ = op.__qualname__ = label
    return op


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _torch_pads(lo: Sequence[int], hi: Sequence[int]) -> list[int]:
    """ONNX begin/end pads of the last dims → F.pad's order (last dim first)."""
    return [p for a in reversed(range(len(lo))) for p in (int(lo[a]), int(hi[a]))]


def _window_pads(n: Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """Begin and end pads per spatial axis, ``auto_pad`` resolved from the input size."""
    r = len(kernel)
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        lo, hi = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            lo.append(small if auto == "SAME_UPPER" else total - small)
            hi.append(total - lo[-1])
        return lo, hi
    if auto == "VALID":
        return [0] * r, [0] * r
    pads = n.attr("pads", [0] * 2 * r)
    return list(pads[:r]), list(pads[r:])


def _window(n: Node) -> tuple[int, list[int], list[int], list[int], list[int], list[int]]:
    spatial = n.shape(0)[2:]
    r = len(spatial)
    kernel = n.attr("kernel_shape") or list(n.shape(1)[2:])
    strides = n.attr("strides", [1] * r)
    dilations = n.attr("dilations", [1] * r)
    lo, hi = _window_pads(n, spatial, kernel, strides, dilations)
    return r, list(kernel), list(strides), list(dilations), lo, hi


def _pre_pad(n: Node, x: Any, lo: list[int], hi: list[int], value: float = 0.0) -> Any:
    """An explicit pad node for asymmetric pads (TF 'SAME'): the op after it then pads nothing."""
    return n.call(F.pad, x, _torch_pads(lo, hi), "constant", value)


def _axes(n: Node, rank: int, attr_before: int, index: int = 1) -> list[int] | None:
    """Axes from the attribute (opsets before ``attr_before``) or the optional input ``index``."""
    if n.opset < attr_before:
        axes = n.attr("axes")
    else:
        axes = _ints(n.value(index, "axes")) if n.has(index) else None
    return None if axes is None else [a % rank for a in axes]


# ---------------------------------------------------------------------------
# windows: convolutions and pooling
# ---------------------------------------------------------------------------
def conv(n: Node) -> Any:
    r, _, strides, dilations, lo, hi = _window(n)
    x = n.x(0)
    if lo != hi:
        x, lo = _pre_pad(n, x, lo, hi), [0] * r
    bias = n.x(2) if n.has(2) else None
    return n.call(_CONV[r], x, n.x(1), bias, tuple(strides), tuple(lo), tuple(dilations), n.attr("group", 1))


def conv_transpose(n: Node) -> Any:
    spatial = n.shape(0)[2:]
    r = len(spatial)
    kernel = n.attr("kernel_shape") or list(n.shape(1)[2:])
    strides, dilations = n.attr("strides", [1] * r), n.attr("dilations", [1] * r)
    extra = n.attr("output_padding", [0] * r)
    full = [(i - 1) * s + (k - 1) * d + 1 + e for i, s, k, d, e in zip(spatial, strides, kernel, dilations, extra)]
    wanted = n.attr("output_shape")
    if wanted is not None:
        wanted = list(wanted)[-r:]
        totals = [f - o for f, o in zip(full, wanted)]
        upper = n.attr("auto_pad", "NOTSET") == "SAME_UPPER"
        lo = [t // 2 if upper else t - t // 2 for t in totals]
        hi = [t - low for t, low in zip(totals, lo)]
    elif n.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        totals = [f - i * s for f, i, s in zip(full, spatial, strides)]
        upper = n.attr("auto_pad") == "SAME_UPPER"
        lo = [t // 2 if upper else t - t // 2 for t in totals]
        hi = [t - low for t, low in zip(totals, lo)]
    else:
        pads = n.attr("pads", [0] * 2 * r)
        lo, hi = list(pads[:r]), list(pads[r:])
    if any(p < 0 for p in lo + hi):
        raise Unsupported("ConvTranspose with an output larger than its full size")
    bias = n.x(2) if n.has(2) else None
    weight, groups = n.x(1), n.attr("group", 1)
    if lo == hi and all(e < max(s, d) for e, s, d in zip(extra, strides, dilations)):
        return n.call(_CONV_T[r], n.x(0), weight, bias, tuple(strides), tuple(lo), tuple(extra), groups,
                      tuple(dilations))
    # asymmetric: the full output, then a crop (output_padding adds zeros-only rows at the end)
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations)):
        raise Unsupported("ConvTranspose output_padding as large as its stride")
    y = n.call(_CONV_T[r], n.x(0), weight, bias, tuple(strides), (0,) * r, tuple(extra), groups, tuple(dilations))
    index = (slice(None), slice(None), *(slice(low, f - high) for low, high, f in zip(lo, hi, full)))
    return n.call(operator.getitem, y, index)


def max_pool(n: Node) -> Any:
    if n.outputs_used()[1:2] == [True]:
        raise Unsupported("MaxPool with its Indices output")
    r, kernel, strides, dilations, lo, hi = _window(n)
    x, ceil = n.x(0), bool(n.attr("ceil_mode", 0))
    if lo != hi or any(p > (d * (k - 1) + 1) // 2 for p, k, d in zip(lo, kernel, dilations)):
        x, lo = _pre_pad(n, x, lo, hi, -math.inf), [0] * r  # ceil_mode then differs only in size: checked
    return n.call(_MAX[r], x, tuple(kernel), tuple(strides), tuple(lo), tuple(dilations), ceil)


def avg_pool(n: Node) -> Any:
    r, kernel, strides, dilations, lo, hi = _window(n)
    if any(d != 1 for d in dilations):
        raise Unsupported("AveragePool with dilations")
    x, ceil, include = n.x(0), bool(n.attr("ceil_mode", 0)), bool(n.attr("count_include_pad", 0))
    if lo != hi or any(p > k // 2 for p, k in zip(lo, kernel)):
        # explicit zeros: the same windows (the border divisor counts them, which changes values, not geometry)
        x, lo, include = _pre_pad(n, x, lo, hi), [0] * r, True
    return n.call(_AVG[r], x, tuple(kernel), tuple(strides), tuple(lo), ceil, include)


def global_pool(table: dict[int, Callable]) -> Callable[[Node], Any]:
    def convert(n: Node) -> Any:
        return n.call(table[len(n.shape(0)) - 2], n.x(0), 1)

    return convert


# ---------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------
def interpolate(input: torch.Tensor, size: Sequence[int], scales: Sequence[float] | None, mode: str, coordinates: str,
           nearest: str, antialias: bool = False) -> torch.Tensor:
    """ONNX Resize over the spatial dims; its geometry is the rules table's entry for this function.

    Named like ``F.interpolate``, which PyTorch models call where exporters write a
    Resize, so the node of an exported model keeps its name; its coordinate modes are ONNX's.

    On the meta device (where the analysis runs it) only the output size matters;
    on real tensors the forms PyTorch also has run through ``F.interpolate``.
    """
    if input.is_meta:
        return input.new_empty((*input.shape[:2], *size))
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[input.dim() - 2]
    forms = {("nearest", "asymmetric", "floor"): ("nearest", None),
             ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
             ("linear", "half_pixel"): (linear, False), ("linear", "pytorch_half_pixel"): (linear, False),
             ("linear", "align_corners"): (linear, True), ("cubic", "half_pixel"): ("bicubic", False)}
    key = (mode, coordinates, nearest) if mode == "nearest" else (mode, coordinates)
    if key not in forms or antialias:
        raise NotImplementedError(f"ONNX Resize {key} has no PyTorch equivalent to run")
    torch_mode, align = forms[key]
    if scales is not None:
        return F.interpolate(input, scale_factor=tuple(scales), mode=torch_mode, align_corners=align)
    return F.interpolate(input, size=tuple(size), mode=torch_mode, align_corners=align)


def resize_node(n: Node) -> Any:
    shape = n.shape(0)
    rank = len(shape)
    upsample = n.op == "Upsample"
    if upsample:
        scales = n.attr("scales") if n.opset < 9 else n.value(1, "scales")
        sizes = None
        mode, coordinates, nearest = n.attr("mode", "nearest").replace("bilinear", "linear"), "asymmetric", "floor"
    else:
        scale_at = 1 if n.opset < 11 else 2
        scales = n.value(scale_at, "scales") if n.has(scale_at) else None
        sizes = n.value(3, "sizes") if n.opset >= 11 and n.has(3) else None
        scales = None if scales is not None and np.asarray(scales).size == 0 else scales
        mode = n.attr("mode", "nearest")
        coordinates = n.attr("coordinate_transformation_mode", "half_pixel" if n.opset >= 11 else "asymmetric")
        nearest = n.attr("nearest_mode", "round_prefer_floor" if n.opset >= 11 else "floor")
        if n.attr("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
            raise Unsupported("Resize keep_aspect_ratio_policy other than stretch")
    axes = n.attr("axes")
    full_scales = [1.0] * rank if scales is not None else None
    full_sizes = list(shape)
    if sizes is not None:
        for a, v in zip(axes or range(rank), _ints(sizes)):
            full_sizes[a % rank] = v
    elif scales is not None:
        for a, v in zip(axes or range(rank), np.asarray(scales, dtype=float).reshape(-1)):
            full_scales[a % rank] = float(v)
        full_sizes = [math.floor(d * s) for d, s in zip(shape, full_scales)]
    else:
        raise Unsupported("Resize with neither scales nor sizes")
    if full_sizes[:2] != list(shape[:2]):
        raise Unsupported("Resize of the batch or channel dim")
    spatial_scales = None if full_scales is None else full_scales[2:]
    return n.call(interpolate, n.x(0), tuple(full_sizes[2:]), None if spatial_scales is None else tuple(spatial_scales),
                  str(mode), str(coordinates), str(nearest), bool(n.attr("antialias", 0)))


def depth_to_space(n: Node) -> Any:
    b = n.attr("blocksize")
    x = n.x(0)
    if n.attr("mode", "DCR") == "DCR":  # channels ordered (block row, block col, channel): reorder to PyTorch's
        c = n.shape(0)[1] // (b * b)
        order = [(i * b + j) * c + k for k in range(c) for i in range(b) for j in range(b)]
        x = n.call(operator.getitem, x, (slice(None), order))
    return n.call(F.pixel_shuffle, x, b)


def space_to_depth(n: Node) -> Any:
    b = n.attr("blocksize")
    y = n.call(F.pixel_unshuffle, n.x(0), b)
    c = n.shape(0)[1]
    order = [k * b * b + i * b + j for i in range(b) for j in range(b) for k in range(c)]
    return n.call(operator.getitem, y, (slice(None), order))


def pad(n: Node) -> Any:
    shape = n.shape(0)
    rank = len(shape)
    if n.opset < 11:
        pads, value = n.attr("pads"), n.attr("value", 0.0)
    else:
        pads = _ints(n.value(1, "pads"))
        value = float(np.asarray(n.value(2, "constant_value")).reshape(-1)[0]) if n.has(2) else 0.0
    axes = [a % rank for a in _ints(n.value(3, "axes"))] if n.opset >= 18 and n.has(3) else list(range(rank))
    lo, hi = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        lo[a], hi[a] = int(pads[k]), int(pads[k + len(axes)])
    first = next((a for a in range(rank) if lo[a] or hi[a]), rank)
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[n.attr("mode", "constant")]
    if first == rank:
        return n.x(0)
    return n.call(F.pad, n.x(0), _torch_pads(lo[first:], hi[first:]), mode, value if mode == "constant" else None)


# ---------------------------------------------------------------------------
# layout: reshapes, permutes, slicing, joining
# ---------------------------------------------------------------------------
def reshape_to(n: Node, target: Sequence[int]) -> Any:
    return n.call(torch.reshape, n.x(0), tuple(int(d) for d in target))


def reshape(n: Node) -> Any:
    shape = n.shape(0)
    target = _ints(n.value(1, "shape")) if n.opset >= 5 else list(n.attr("shape"))
    if not n.attr("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    return reshape_to(n, target)


def flatten(n: Node) -> Any:
    shape = n.shape(0)
    axis = n.attr("axis", 1) % max(len(shape), 1) if shape else 0
    if axis == 1:
        return n.call(torch.flatten, n.x(0), 1)
    return reshape_to(n, [math.prod(shape[:axis]), math.prod(shape[axis:])])


def squeeze(n: Node) -> Any:
    shape = n.shape(0)
    axes = _axes(n, len(shape), 13)
    keep = [d for i, d in enumerate(shape) if not (d == 1 and (axes is None or i in axes))]
    return reshape_to(n, keep)


def unsqueeze(n: Node) -> Any:
    shape = list(n.shape(0))
    axes = n.attr("axes") if n.opset < 13 else _ints(n.value(1, "axes"))
    rank = len(shape) + len(axes)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return reshape_to(n, shape)


def transpose(n: Node) -> Any:
    perm = n.attr("perm") or list(reversed(range(len(n.shape(0)))))
    return n.call(torch.permute, n.x(0), tuple(perm))


def concat(n: Node) -> Any:
    rank = len(n.shape(0))
    return n.call(torch.cat, [n.x(i) for i in range(n.n_inputs) if n.has(i)], n.attr("axis") % rank)


def split(n: Node) -> Any:
    shape = n.shape(0)
    axis = n.attr("axis", 0) % len(shape)
    if n.opset < 13:
        sizes = n.attr("split")
    else:
        sizes = _ints(n.value(1, "split")) if n.has(1) else None
    if sizes is None:
        count = n.attr("num_outputs", n.n_outputs)
        each = -(-shape[axis] // count)
        sizes = [min(each, shape[axis] - k * each) for k in range(count)]
    parts = n.call(torch.split, n.x(0), tuple(int(s) for s in sizes), axis)
    return tuple(n.call(operator.getitem, parts, k) for k in range(n.n_outputs))


def slice_(n: Node) -> Any:
    shape = n.shape(0)
    rank = len(shape)
    if n.opset < 10:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
    else:
        starts, ends = _ints(n.value(1, "starts")), _ints(n.value(2, "ends"))
        axes = _ints(n.value(3, "axes")) if n.has(3) else None
        steps = _ints(n.value(4, "steps")) if n.has(4) else None
    axes = list(range(len(starts))) if axes is None else [a % rank for a in axes]
    steps = steps or [1] * len(starts)
    index: list[Any] = [slice(None)] * rank
    for a, start, end, step in zip(axes, starts, ends, steps):
        if step < 1:
            raise Unsupported("Slice with a negative step")
        index[a] = slice(*slice(int(start), int(end), int(step)).indices(shape[a]))
    return n.call(operator.getitem, n.x(0), tuple(index))


def gather(n: Node) -> Any:
    rank = len(n.shape(0))
    axis = n.attr("axis", 0) % rank
    indices = np.asarray(n.value(1, "indices"))
    if indices.ndim > 1:
        raise Unsupported("Gather with multi-dimensional indices")
    size = n.shape(0)[axis]
    picked: Any = int(indices) % size if indices.ndim == 0 else [int(i) % size for i in indices]
    return n.call(operator.getitem, n.x(0), (*(slice(None),) * axis, picked))


def expand(n: Node) -> Any:
    target = np.broadcast_shapes(tuple(n.shape(0)), tuple(_ints(n.value(1, "shape"))))
    return n.method("expand", n.x(0), *target)


def tile(n: Node) -> Any:
    return n.call(torch.tile, n.x(0), tuple(_ints(n.value(1, "repeats"))))


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------
def unary(fn: Callable, **fixed: Any) -> Callable[[Node], Any]:
    def convert(n: Node) -> Any:
        return n.call(fn, n.x(0), **fixed)

    return convert


def with_attrs(fn: Callable, **attrs: tuple[str, Any]) -> Callable[[Node], Any]:
    """A unary op whose torch keyword arguments come from ONNX attributes (``alpha`` → ``negative_slope``)."""

    def convert(n: Node) -> Any:
        return n.call(fn, n.x(0), **{kw: n.attr(name, default) for kw, (name, default) in attrs.items()})

    return convert


def binary(fn: Callable) -> Callable[[Node], Any]:
    """Elementwise over all inputs (variadic Max/Min/Sum chain pairwise)."""

    def convert(n: Node) -> Any:
        out = n.x(0)
        for i in range(1, n.n_inputs):
            out = n.call(fn, out, n.x(i))
        return out

    return convert


def mean(n: Node) -> Any:
    return n.call(operator.truediv, binary(operator.add)(n), n.n_inputs)


def hard_sigmoid(n: Node) -> Any:
    alpha, beta = n.attr("alpha", 0.2), n.attr("beta", 0.5)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return n.call(F.hardsigmoid, n.x(0))
    return n.call(torch.clamp, n.call(operator.add, n.call(operator.mul, n.x(0), alpha), beta), 0.0, 1.0)


def prelu(n: Node) -> Any:
    x = n.x(0)
    return n.call(torch.where, n.call(operator.ge, x, 0), x, n.call(operator.mul, x, n.x(1)))


def clip(n: Node) -> Any:
    if n.opset < 11:
        low, high = n.attr("min"), n.attr("max")
    else:
        low = float(np.asarray(n.value(1, "min")).reshape(-1)[0]) if n.has(1) else None
        high = float(np.asarray(n.value(2, "max")).reshape(-1)[0]) if n.has(2) else None
    if low is None and high is None:
        return n.x(0)
    return n.call(torch.clamp, n.x(0), low, high)


def gelu(n: Node) -> Any:
    return n.call(F.gelu, n.x(0), approximate=n.attr("approximate", "none"))


def cast(n: Node) -> Any:
    dtype = DTYPES.get(n.attr("to"))
    if dtype is None:
        raise Unsupported(f"Cast to ONNX type {n.attr('to')}")
    return n.method("to", n.x(0), dtype)


def quantise(n: Node) -> Any:
    """QuantizeLinear/DequantizeLinear: elementwise (the quantised values matter, not their geometry)."""
    dtype = torch.float32 if n.op == "DequantizeLinear" else torch.int32
    return n.method("to", n.x(0), dtype)


# ---------------------------------------------------------------------------
# normalisation, softmax, reductions
# ---------------------------------------------------------------------------
def batch_norm(n: Node) -> Any:
    if any(n.outputs_used()[1:]):
        raise Unsupported("BatchNormalization in training mode")
    return n.call(F.batch_norm, n.x(0), n.x(3), n.x(4), n.x(1), n.x(2), False, 0.0, n.attr("epsilon", 1e-5))


def instance_norm(n: Node) -> Any:
    return n.call(F.instance_norm, n.x(0), None, None, n.x(1), n.x(2), True, 0.0, n.attr("epsilon", 1e-5))


def group_norm(n: Node) -> Any:
    groups = n.attr("num_groups")
    channels = n.shape(0)[1]
    params = (n.x(1), n.x(2)) if n.shape(1) == (channels,) else (None, None)
    return n.call(F.group_norm, n.x(0), groups, *params, n.attr("epsilon", 1e-5))


def layer_norm(n: Node) -> Any:
    if any(n.outputs_used()[1:]):
        raise Unsupported("LayerNormalization with its Mean or InvStdDev output")
    shape = n.shape(0)
    axis = n.attr("axis", -1) % len(shape)
    normalized = tuple(shape[axis:])
    weight = n.x(1) if n.shape(1) == normalized else None
    bias = n.x(2) if n.has(2) and n.shape(2) == normalized else None
    out = n.call(F.layer_norm, n.x(0), normalized, weight, bias, n.attr("epsilon", 1e-5))
    if weight is None:
        out = n.call(operator.mul, out, n.x(1))
    if n.has(2) and bias is None:
        out = n.call(operator.add, out, n.x(2))
    return out


def lrn(n: Node) -> Any:
    return n.call(F.local_response_norm, n.x(0), n.attr("size"), n.attr("alpha", 1e-4), n.attr("beta", 0.75),
                  n.attr("bias", 1.0))


def softmax(fn: Callable) -> Callable[[Node], Any]:
    def convert(n: Node) -> Any:
        rank = len(n.shape(0))
        axis = n.attr("axis", -1 if n.opset >= 13 else 1) % rank
        if n.opset >= 13 or axis == rank - 1:
            return n.call(fn, n.x(0), axis)
        shape = n.shape(0)  # before opset 13: over the dims from axis on, flattened
        flat = n.call(torch.reshape, n.x(0), (math.prod(shape[:axis]), math.prod(shape[axis:])))
        return n.call(torch.reshape, n.call(fn, flat, 1), tuple(shape))

    return convert


def reduce(fn: Callable, attr_before: int = 18, then: Callable | None = None,
           first: Callable | None = None) -> Callable[[Node], Any]:
    """ReduceX over axes (attribute before ``attr_before``, input after); ``first``/``then`` wrap the sum."""

    def convert(n: Node) -> Any:
        rank = len(n.shape(0))
        axes = _axes(n, rank, attr_before)
        if axes is None or not axes:
            if n.attr("noop_with_empty_axes", 0):
                return n.x(0)
            axes = list(range(rank))
        x = n.x(0) if first is None else n.call(first, n.x(0))
        keep = bool(n.attr("keepdims", 1))
        if fn is torch.prod:
            for a in sorted(axes, reverse=True):
                x = n.call(torch.prod, x, a, keep)
            out = x
        else:
            out = n.call(fn, x, tuple(axes), keep)
        return out if then is None else n.call(then, out)

    return convert


def arg_reduce(fn: Callable) -> Callable[[Node], Any]:
    def convert(n: Node) -> Any:
        return n.call(fn, n.x(0), n.attr("axis", 0) % len(n.shape(0)), bool(n.attr("keepdims", 1)))

    return convert


def cumsum(n: Node) -> Any:
    return n.call(torch.cumsum, n.x(0), int(np.asarray(n.value(1, "axis")).reshape(-1)[0]) % len(n.shape(0)))


# ---------------------------------------------------------------------------
# products and attention
# ---------------------------------------------------------------------------
def gemm(n: Node) -> Any:
    a, b = n.x(0), n.x(1)
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    if n.attr("transA", 0):
        a = n.call(torch.transpose, a, 0, 1)
    bias_ok = n.has(2) and beta == 1.0 and len(n.shape(2)) == 1 and n.shape(2)[0] == n.shape(1)[0 if n.attr("transB", 0) else 1]
    if n.attr("transB", 0):
        out = n.call(F.linear, a, b, n.x(2) if bias_ok else None)
    else:
        out = n.call(torch.matmul, a, b)
        if bias_ok:
            out = n.call(operator.add, out, n.x(2))
    if alpha != 1.0:
        out = n.call(operator.mul, out, alpha)
    if n.has(2) and not bias_ok:
        c = n.x(2) if beta == 1.0 else n.call(operator.mul, n.x(2), beta)
        out = n.call(operator.add, out, c)
    return out


def einsum(n: Node) -> Any:
    return n.call(torch.einsum, n.attr("equation"), *[n.x(i) for i in range(n.n_inputs)])


def attention(n: Node) -> Any:
    if n.n_inputs > 4 or any(n.outputs_used()[1:]) or len(n.shape(0)) != 4:
        raise Unsupported("Attention with past keys or values, extra outputs or 3-D inputs")
    mask = n.x(3) if n.has(3) else None
    return n.call(F.scaled_dot_product_attention, n.x(0), n.x(1), n.x(2), mask, 0.0, bool(n.attr("is_causal", 0)),
                  scale=n.attr("scale"))


def where(n: Node) -> Any:
    return n.call(torch.where, n.x(0), n.x(1), n.x(2))


OPS: dict[str, Callable[[Node], Any]] = {
    "Conv": conv, "ConvTranspose": conv_transpose, "MaxPool": max_pool, "AveragePool": avg_pool,
    "GlobalAveragePool": global_pool(_GAVG), "GlobalMaxPool": global_pool(_GMAX),
    "Resize": resize_node, "Upsample": resize_node, "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth,
    "Pad": pad, "Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
    "Transpose": transpose, "Concat": concat, "Split": split, "Slice": slice_, "Gather": gather, "Expand": expand,
    "Tile": tile,
    "Add": binary(operator.add), "Sub": binary(operator.sub), "Mul": binary(operator.mul),
    "Div": binary(operator.truediv), "Pow": binary(torch.pow), "Max": binary(torch.maximum),
    "Min": binary(torch.minimum), "Sum": binary(operator.add), "Mean": mean, "Where": where,
    "Equal": binary(operator.eq), "Less": binary(operator.lt), "Greater": binary(operator.gt),
    "LessOrEqual": binary(operator.le), "GreaterOrEqual": binary(operator.ge), "And": binary(operator.and_),
    "Or": binary(operator.or_), "Not": unary(operator.invert),
    "Relu": unary(torch.relu), "Sigmoid": unary(torch.sigmoid), "Tanh": unary(torch.tanh), "Exp": unary(torch.exp),
    "Log": unary(torch.log), "Abs": unary(torch.abs), "Neg": unary(torch.neg), "Sqrt": unary(torch.sqrt),
    "Reciprocal": unary(torch.reciprocal), "Erf": unary(torch.erf), "Floor": unary(torch.floor),
    "Ceil": unary(torch.ceil), "Round": unary(torch.round), "Sign": unary(torch.sign), "Sin": unary(torch.sin),
    "Cos": unary(torch.cos), "Softplus": unary(F.softplus), "Softsign": unary(F.softsign),
    "HardSwish": unary(F.hardswish), "Mish": unary(F.mish), "Selu": unary(F.selu), "HardSigmoid": hard_sigmoid,
    "LeakyRelu": with_attrs(F.leaky_relu, negative_slope=("alpha", 0.01)), "Elu": with_attrs(F.elu, alpha=("alpha", 1.0)),
    "Celu": with_attrs(F.celu, alpha=("alpha", 1.0)), "ThresholdedRelu": with_attrs(F.threshold, threshold=("alpha", 1.0), value=("_", 0.0)),
    "Gelu": gelu, "PRelu": prelu, "Clip": clip, "Cast": cast, "QuantizeLinear": quantise, "DequantizeLinear": quantise,
    "BatchNormalization": batch_norm, "InstanceNormalization": instance_norm, "GroupNormalization": group_norm,
    "LayerNormalization": layer_norm, "LRN": lrn,
    "Softmax": softmax(torch.softmax), "LogSoftmax": softmax(torch.log_softmax),
    "ReduceMean": reduce(torch.mean), "ReduceSum": reduce(torch.sum, 13), "ReduceMax": reduce(torch.amax),
    "ReduceMin": reduce(torch.amin), "ReduceProd": reduce(torch.prod), "ReduceLogSumExp": reduce(torch.logsumexp),
    "ReduceSumSquare": reduce(torch.sum, first=torch.square), "ReduceL1": reduce(torch.sum, first=torch.abs),
    "ReduceL2": reduce(torch.sum, first=torch.square, then=torch.sqrt), "ReduceLogSum": reduce(torch.sum, then=torch.log),
    "ArgMax": arg_reduce(torch.argmax), "ArgMin": arg_reduce(torch.argmin), "CumSum": cumsum,
    "MatMul": binary(torch.matmul), "Gemm": gemm, "Einsum": einsum, "Attention": attention,
}
