"""Size-dependent resampling: adaptive pooling, interpolation, pixel (un)shuffle."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

from torch import nn

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, has_factors, regroup
from ..tensor import Digit, Geo, TensorGeom, Track
from ..union import unite
from .base import RuleFn, bound, compose, ntuple, spatial, tensor_geo

__all__ = [
    "adaptive_map", "adaptive_pool", "scale_image", "interpolate", "interpolation_map", "multi_scale_fusion", "patch_merging_pad", "pixel_shuffle",
    "pixel_unshuffle"
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
            elif spread.axes_in(d) and not spread.slide(d, m, size_out):
                bound(call, "resampling a dim that merges factors", spread, spread.axes_in(d))
            continue
        t = dims[d]
        if t is None or t.map is None:
            continue
        dims[d] = Track(t.axis, None) if m is None else Track(t.axis, t.map.then(m))
    return spread.geom(g, call.out_shape) if spread is not None else g.with_dims(dims)


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
