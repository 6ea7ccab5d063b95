"""Reductions and normalisations: what depends on a whole axis, or only gains global context from it."""

from __future__ import annotations

from typing import Callable

from ..call import Call
from ..tensor import Geo, TensorGeom
from .base import RuleFn, lose, norm_dims, ntuple, tensor_geo

__all__ = ["norm_shape_len", "normalise_over", "over_dim", "reduce", "spatial_norm"]


def reduce(call: Call) -> Geo:
    """mean/sum/amax/… over dims: reduced spatial dims depend on the whole axis."""
    g = tensor_geo(call)
    dims = call.arg(1, "dim", None)
    keep = bool(call.arg(2, "keepdim", False))
    out_geo = _reduced(g, norm_dims(dims, g.rank), keep)
    if isinstance(call.out, tuple):  # x.max(dim) -> (values, indices)
        return tuple(out_geo for _ in call.out)
    return out_geo


def _reduced(g: TensorGeom, dims: list[int], keep: bool) -> TensorGeom:
    tracks = lose(g, dims, keep_collapsed=keep)
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
        g = tensor_geo(call)
        n = last(call)
        spatial = any(t is not None for t in g.dims[g.rank - n :])
        return g.with_dims(g.dims, global_ctx=spatial)

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
    t = g.dims[dim % g.rank]
    return g.with_dims(g.dims, global_ctx=t is not None)


def spatial_norm(call: Call) -> Geo:
    """GroupNorm/InstanceNorm: statistics over the spatial dims, so every unit has global context."""
    g = tensor_geo(call)
    return g.with_dims(g.dims, global_ctx=True)
