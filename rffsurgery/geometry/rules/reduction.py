"""Reductions and normalisations: what depends on a whole axis, or only gains global context from it."""

from __future__ import annotations

from typing import Callable, Iterable

from ..call import Call
from ..factors import Spread, has_factors
from ..tensor import Geo, Packed, TensorGeom, Track
from .base import RuleFn, lose, norm_dims, ntuple, tensor_geo

__all__ = ["norm_shape_len", "normalise_over", "normalize", "over_dim", "reduce", "spatial_norm", "whole_axes"]


def reduce(call: Call) -> Geo:
    """mean/sum/amax/… over dims: reduced spatial dims depend on the whole axis.

    Over a dim with factors the reduction sums exactly the factors it carries: a
    mean over a window's tokens leaves each window reading itself.
    """
    g = tensor_geo(call)
    dims = norm_dims(call.arg(1, "dim", None), g.rank)
    keep = bool(call.arg(2, "keepdim", False))
    out = call.out[0] if isinstance(call.out, tuple) else call.out
    out_geo = _reduced_factors(g, dims, keep, call.in_shape, tuple(out.shape)) if has_factors(g) \
        else _reduced(g, dims, keep)
    if isinstance(call.out, tuple):  # x.max(dim) -> (values, indices)
        return tuple(out_geo for _ in call.out)
    return out_geo


def _reduced(g: TensorGeom, dims: list[int], keep: bool) -> TensorGeom:
    tracks = lose(g, dims, keep_collapsed=keep)
    if not keep:
        tracks = [t for d, t in enumerate(tracks) if d not in dims]
    return g.with_dims(tracks)


def _reduced_factors(g: TensorGeom, dims: list[int], keep: bool, shape: tuple[int, ...],
                     out_shape: tuple[int, ...]) -> TensorGeom:
    spread = Spread.of(g, shape)
    for d in dims:
        spread.sum_away(d)
        if keep and isinstance(g.dims[d], Track):
            spread.dims[d] = Track(g.dims[d].axis, None)
    if not keep:
        for d in reversed(dims):
            del spread.dims[d], spread.lead[d], spread.trail[d]
    return spread.geom(g, out_shape)


def whole_axes(g: TensorGeom, dims: Iterable[int]) -> bool:
    """Whether ``dims`` hold every factor of some spatial axis (statistics over them are global context)."""
    dims = set(dims)
    if any(isinstance(g.dims[d], Track) for d in dims):
        return True
    inside: dict[int, bool] = {}
    for d, t in enumerate(g.dims):
        if isinstance(t, Packed):
            for a in t.axes:
                inside[a] = inside.get(a, True) and d in dims
    return any(inside.values())


def normalise_over(last: Callable[[Call], int]) -> RuleFn:
    """Normalisation over the last ``last(call)`` dims (LayerNorm, RMSNorm, softmax over a dim).

    Over channels it is pointwise; over a spatial dim every unit also depends on
    that whole axis through the statistics, so the local map stays and
    ``global_ctx`` is set.  Statistics over part of an axis (a window's tokens, a
    patch's sub-pixel channels) are local: they add nothing.
    """

    def rule(call: Call) -> Geo:
        g = tensor_geo(call)
        n = last(call)
        return g.with_dims(g.dims, global_ctx=whole_axes(g, range(g.rank - n, g.rank)))

    rule.__doc__ = normalise_over.__doc__
    return rule


def norm_shape_len(call: Call) -> int:
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    return len(ntuple(shape, 1)) if not isinstance(shape, int) else 1


def over_dim(call: Call) -> Geo:
    """softmax/log_softmax/cumsum-like ops along one dim."""
    g = tensor_geo(call)
    dim = call.module.dim if call.module is not None else call.arg(1, "dim")
    if dim is None:
        return g.with_dims(g.dims, global_ctx=True)
    return g.with_dims(g.dims, global_ctx=whole_axes(g, [dim % g.rank]))


def normalize(call: Call) -> Geo:
    """``F.normalize(x, p, dim)``: divided by a norm over ``dim`` — statistics, like a normalisation over it."""
    g = tensor_geo(call)
    return g.with_dims(g.dims, global_ctx=whole_axes(g, [call.arg(2, "dim", 1) % g.rank]))


def spatial_norm(call: Call) -> Geo:
    """GroupNorm/InstanceNorm: statistics over the spatial dims, so every unit has global context."""
    g = tensor_geo(call)
    return g.with_dims(g.dims, global_ctx=True)
