"""Size-dependent resampling: adaptive pooling, interpolation, pixel (un)shuffle."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from typing import Callable

from torch import nn

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, has_factors, regroup
from ..tensor import Digit, Geo, TensorGeom, Track
from ..union import unite
from .base import RuleFn, bound, compose, ntuple, slide_or_bound, spatial, tensor_geo

__all__ = [
    "adaptive_map", "adaptive_pool", "interpolate", "interpolation_map", "multi_scale_fusion", "onnx_resize",
    "onnx_resize_map", "patch_merging_pad", "pixel_shuffle", "pixel_unshuffle", "sampling_map", "scale_image", "upsample"
]


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
    g = tensor_geo(call)
    dims = list(g.dims)
    spread = Spread.of(g, call.in_shape) if has_factors(g) else None
    for d, size_in, size_out in zip(range(g.rank - n, g.rank), call.in_shape[-n:], call.out_shape[-n:]):
        m = make(size_in, size_out)
        if spread is not None:
            if m is None:
                spread.sum_away(d)
            elif spread.axes_in(d):
                slide_or_bound(call, spread, d, m, size_out, "resampling a dim that merges factors")
            continue
        t = dims[d]
        if t is None or t.map is None:
            continue
        dims[d] = Track(t.axis, None) if m is None else Track(t.axis, t.map.then(m))
    return spread.geom(g, call.out_shape) if spread is not None else g.with_dims(dims)


def adaptive_pool(n: int) -> RuleFn:
    def rule(call: Call) -> Geo:
        if isinstance(call.out, tuple):  # aten's adaptive_max_pool*d: (values, indices), both on the same grid
            geo = _resample(replace(call, out=call.out[0]), n, adaptive_map)
            return (geo, geo)
        return _resample(call, n, adaptive_map)

    rule.__doc__ = adaptive_map.__doc__
    return rule


def sampling_map(a: Fraction, b: Fraction, taps: str, rounding: Callable[[Fraction], int] = math.floor) -> AxisMap:
    """Resampling whose output index u reads around the source coordinate ``x = a·u + b`` (exact rationals).

    ``taps``: ``"nearest"`` reads ``rounding(x)``; ``"linear"`` the two neighbours of x,
    ``"cubic"`` the four; a neighbour with an exactly zero weight (x on a pixel) is not
    read, as the gradient does not reach it.  Every front end's resampling (PyTorch's
    modes, ONNX's coordinate transformations) is such an affine source coordinate.
    """

    def phase(u: int) -> tuple[int, int]:
        x = a * u + b
        if taps == "nearest":
            i = rounding(x)
            return i, i
        i0 = math.floor(x)
        if x == i0:
            return i0, i0
        return (i0 - 1, i0 + 2) if taps == "cubic" else (i0, i0 + 1)

    return AxisMap.from_function(a.denominator, a.numerator, phase)


_TAPS = {"nearest": "nearest", "nearest-exact": "nearest", "linear": "linear", "bilinear": "linear",
         "trilinear": "linear", "bicubic": "cubic"}


def interpolation_map(mode: str, size_in: int, size_out: int, scale: Fraction, align_corners: bool) -> AxisMap:
    """Which inputs output index u reads, for PyTorch's interpolation modes (exact rationals).

    ``scale`` is input/output, the factor PyTorch uses to find the source coordinate.
    """
    if mode == "area":
        return adaptive_map(size_in, size_out) or AxisMap(1, size_in, (0,), (size_in - 1,))
    if mode not in _TAPS:
        raise RuleError(f"interpolation mode {mode!r} has no rule")
    half = Fraction(1, 2)
    if mode == "nearest":
        return sampling_map(scale, Fraction(0), "nearest")
    if mode == "nearest-exact":
        return sampling_map(scale, half * scale, "nearest")
    if align_corners:
        return sampling_map(Fraction(size_in - 1, size_out - 1) if size_out > 1 else Fraction(0), Fraction(0),
                            _TAPS[mode])
    return sampling_map(scale, half * scale - half, _TAPS[mode])


def _interpolated(call: Call, mode: str, align: bool, scale_factor: object, recompute: object, antialias: bool) -> Geo:
    """F.interpolate's geometry: sampled at 1/scale_factor when one is given (and not recomputed), else in/out."""
    g = tensor_geo(call)
    n = g.rank - 2
    sizes = list(zip(call.in_shape[-n:], call.out_shape[-n:]))
    if antialias and any(o < i for i, o in sizes):
        raise RuleError("antialiased downsampling has no rule")
    if scale_factor is not None and not recompute:
        factors = [Fraction(1) / Fraction(f) for f in ntuple(scale_factor, n)]
    else:
        factors = [Fraction(i, o) for i, o in sizes]
    maps = iter([interpolation_map(mode, i, o, f, align) for (i, o), f in zip(sizes, factors)])
    return _resample(call, n, lambda i, o: next(maps))


def interpolate(call: Call) -> Geo:
    """F.interpolate / nn.Upsample: nearest, nearest-exact, (bi/tri)linear, bicubic, area."""
    m = call.module
    if m is not None:
        return _interpolated(call, m.mode, bool(m.align_corners), m.scale_factor,
                             getattr(m, "recompute_scale_factor", None), False)
    return _interpolated(call, call.arg(3, "mode", "nearest"), bool(call.arg(4, "align_corners", None)),
                         call.arg(2, "scale_factor", None), call.arg(5, "recompute_scale_factor", None),
                         bool(call.arg(6, "antialias", False)))


def upsample(mode: str) -> RuleFn:
    """aten's ``upsample_*.vec`` ops (torch.export graphs): F.interpolate lowered, with its scale factors.

    Their schemas are ``(input, output_size, [align_corners,] scale_factors)``.
    """
    linear = mode not in ("nearest", "nearest-exact")

    def rule(call: Call) -> Geo:
        align = bool(call.arg(2, "align_corners", False)) if linear else False
        scales = call.arg(3 if linear else 2, "scale_factors", None)
        return _interpolated(call, mode, align, scales, None, False)

    rule.__doc__ = upsample.__doc__
    return rule


def onnx_resize_map(mode: str, coordinates: str, nearest: str, size_in: int, size_out: int,
                    scale: Fraction) -> AxisMap:
    """ONNX Resize along one axis: its coordinate transformation, then nearest rounding or linear/cubic taps.

    ``scale`` is output/input as ONNX defines it (the ``scales`` input, else sizes).
    """
    half = Fraction(1, 2)
    inv = 1 / scale
    if coordinates == "half_pixel" or coordinates == "pytorch_half_pixel" and size_out > 1:
        a, b = inv, half * inv - half
    elif coordinates == "pytorch_half_pixel":
        a, b = Fraction(0), Fraction(0)
    elif coordinates == "align_corners":
        a, b = (Fraction(size_in - 1, size_out - 1) if size_out > 1 else Fraction(0)), Fraction(0)
    elif coordinates == "asymmetric":
        a, b = inv, Fraction(0)
    elif coordinates == "tf_half_pixel_for_nn":
        a, b = inv, half * inv
    elif coordinates == "half_pixel_symmetric":
        adjustment = Fraction(size_out) / (scale * size_in)
        a, b = inv, Fraction(size_in, 2) * (1 - adjustment) + half * inv - half
    else:
        raise RuleError(f"Resize coordinate_transformation_mode {coordinates!r} has no rule")
    taps = {"nearest": "nearest", "linear": "linear", "cubic": "cubic"}.get(mode)
    if taps is None:
        raise RuleError(f"Resize mode {mode!r} has no rule")
    rounding = {"round_prefer_floor": lambda x: math.ceil(x - half), "round_prefer_ceil": lambda x: math.floor(x + half),
                "floor": math.floor, "ceil": math.ceil}.get(nearest)
    if rounding is None:
        raise RuleError(f"Resize nearest_mode {nearest!r} has no rule")
    return sampling_map(a, b, taps, rounding)


def onnx_resize(call: Call) -> Geo:
    """An ONNX Resize (``rffsurgery.trace.onnx_ops.interpolate``): scales or sizes, per-axis maps of :func:`onnx_resize_map`.

    Its arguments are ``(input, size, scales, mode, coordinate_transformation_mode,
    nearest_mode, antialias)`` over the spatial axes.
    """
    g = tensor_geo(call)
    n = g.rank - 2
    scales = call.arg(2, "scales", None)
    mode, coordinates, nearest = call.arg(3, "mode"), call.arg(4, "coordinates"), call.arg(5, "nearest")
    sizes = list(zip(call.in_shape[-n:], call.out_shape[-n:]))
    if call.arg(6, "antialias", False) and any(o < i for i, o in sizes):
        raise RuleError("antialiased downsampling has no rule")
    factors = [Fraction(o, i) for i, o in sizes] if scales is None else \
        [Fraction(s).limit_denominator(1 << 16) for s in scales]
    maps = [onnx_resize_map(mode, coordinates, nearest, i, o, f) for (i, o), f in zip(sizes, factors)]
    if mode == "nearest" and any(m.interval(0)[0] < 0 or m.interval(o - 1)[1] > i - 1 for m, (i, o) in zip(maps, sizes)):
        # like replicate padding: a periodic map cannot clamp, the border units are reported unclipped
        call.notes.append("nearest indices past the border read the edge pixel: border units reported unclipped")
    each = iter(maps)
    return _resample(call, n, lambda i, o: next(each))


def pixel_shuffle(call: Call) -> Geo:
    """``(*, C·r², H, W) → (*, C, H·r, W·r)``: each channel offset becomes a phase of the finer grid.

    As the ``view``/``permute`` it is: the r·r channel factors go under the rows and
    columns, where a plain factor refines the axis (unit ``u`` reads ``⌊u/r⌋``,
    period r) and a factor that came from space (after space-to-depth) simply
    returns to its axis.
    """
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    g = tensor_geo(call)
    if not has_factors(g):
        shuffle = AxisMap.from_function(r, 1, lambda j: (j // r, j // r))
        return spatial(call, 2, [shuffle, shuffle])
    spread = Spread.of(g, call.in_shape)
    k = g.rank - 3
    channels = spread.digits_at(k, call.in_shape[k])
    parts = regroup(channels, [call.out_shape[k], r, r]) if channels is not None else None
    rows, cols = (spread.digits_at(d, call.in_shape[d]) for d in (k + 1, k + 2))
    if parts is None or rows is None or cols is None:
        return _lost_shuffle(call, spread, g)
    spread.dims[k], spread.dims[k + 1], spread.dims[k + 2] = parts[0], rows + parts[1], cols + parts[2]
    spread.promote(k + 1)
    spread.promote(k + 2)
    return spread.geom(g, call.out_shape)


def pixel_unshuffle(call: Call) -> Geo:
    """``(*, C, H, W) → (*, C·r², H/r, W/r)``: the offset inside each r×r block moves to the channels.

    The block offset stays a digit of its axis (sub-pixel channels), so a unit is
    still one input pixel: unit ``u = q·r + j`` of the rows lives at position q, in
    the channels of offset j.  The conv that usually follows sums those channels,
    which makes it read the r×r blocks of its window.
    """
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    g = tensor_geo(call)
    spread = Spread.of(g, call.in_shape)
    k = g.rank - 3
    dims = [spread.digits_at(d, call.in_shape[d]) for d in (k, k + 1, k + 2)]
    rows = regroup(dims[1], [call.out_shape[k + 1], r]) if dims[1] is not None else None
    cols = regroup(dims[2], [call.out_shape[k + 2], r]) if dims[2] is not None else None
    if dims[0] is None or rows is None or cols is None:
        return _lost_shuffle(call, spread, g)
    # a block row of one position still holds its axis's one unit there (its high digit, of one value)
    rows[0], cols[0] = ([Digit(low[0].axis, low[0].place * r, 1)] if not high and low and low[0].axis is not None
                        else high for high, low in (rows, cols))
    spread.dims[k], spread.dims[k + 1], spread.dims[k + 2] = dims[0] + rows[1] + cols[1], rows[0], cols[0]
    return spread.geom(g, call.out_shape)


def _lost_shuffle(call: Call, spread: Spread, g: TensorGeom) -> TensorGeom:
    """A pixel (un)shuffle whose dims cannot be dealt out: the axes it moves are reported global."""
    k = g.rank - 3
    bound(call, "pixel (un)shuffle across factors", spread, set().union(*(spread.axes_in(d) for d in (k, k + 1, k + 2))))
    for d in (k, k + 1, k + 2):
        spread.dims[d], spread.lead[d], spread.trail[d] = [], 0, 0
    return spread.geom(g, call.out_shape)


def patch_merging_pad(call: Call) -> Geo:
    """Swin's patch merging on (…, H, W, C): 2×2 space-to-depth after padding to even sizes.

    torchvision's ``_patch_merging_pad`` function, and timm's ``PatchMerging`` blocks
    (which then normalise and project each token: no spatial effect).
    """
    g = tensor_geo(call)
    return compose(g, {g.rank - 3: AxisMap.window(2, 2, 0), g.rank - 2: AxisMap.window(2, 2, 0)})


def scale_image(call: Call) -> Geo:
    """timm CrossViT's ``scale_image``: the image resized to ``ss`` (bicubic) or centre-cropped to it."""
    g = tensor_geo(call)
    ss, crop = tuple(call.arg(1, "ss")), bool(call.arg(2, "crop_scale", False))
    size = call.in_shape[-2:]
    if tuple(size) == ss:
        return g
    if crop and all(o <= i for o, i in zip(ss, size)):
        offsets = [int(round((i - o) / 2.0)) for i, o in zip(size, ss)]
        return spatial(call, 2, [AxisMap.window(1, 1, -off) for off in offsets])
    maps = iter([interpolation_map("bicubic", i, o, Fraction(i, o), False) for i, o in zip(size, ss)])
    return _resample(call, 2, lambda i, o: next(maps))


def _resized(g: TensorGeom, sizes_in: tuple[int, ...], sizes_out: tuple[int, ...], mode: str) -> TensorGeom:
    """``F.interpolate(x, size=sizes_out, mode=mode)`` on the last two dims of a tensor with geometry ``g``."""
    return compose(g, {d: interpolation_map(mode, i, o, Fraction(i, o), False)
                       for d, i, o in zip((g.rank - 2, g.rank - 1), sizes_in, sizes_out) if i != o})


def multi_scale_fusion(call: Call) -> Geo:
    """timm MobileNetV5's ``MultiScaleFusionAdapter``: resize every input up to the first's size, concatenate,
    a pointwise FFN and norm, then average-pool (whole ratio) or bilinear-resize to ``output_resolution``."""
    m = call.module
    if any(k != 1 for conv in m.ffn.modules() if isinstance(conv, nn.Conv2d) for k in conv.kernel_size):
        raise RuleError("fusion FFN with a spatial kernel")
    values, geos = call.arg(0, "inputs"), call.geo(0, "inputs")
    high = tuple(values[0].shape[-2:])
    resized = []
    for value, g in zip(values, geos):
        if not isinstance(g, TensorGeom):
            raise RuleError("fusion input without a traced geometry")
        size = tuple(value.shape[-2:])
        up = size[0] < high[0] or size[1] < high[1]
        resized.append((_resized(g, size, high, m.interpolation_mode) if up else g, (*value.shape[:-2], *high)))
    out_shape = (*call.out_shape[:2], *high)
    result = unite(resized, out_shape)
    call.notes.extend(result.notes)
    g = result.geom
    if not isinstance(g, TensorGeom) or high == tuple(m.output_resolution):
        return g
    if any(h % o for h, o in zip(high, m.output_resolution)):
        return _resized(g, high, tuple(m.output_resolution), "bilinear")
    return compose(g, {g.rank - 2 + a: AxisMap.window(h // o, h // o, 0)
                       for a, (h, o) in enumerate(zip(high, m.output_resolution))})
