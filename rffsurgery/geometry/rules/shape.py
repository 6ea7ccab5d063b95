"""Ops that move, merge, slice or copy dims: reshapes, permutes, indexing, cat/stack/split, expand/repeat."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom, Track, unite
from .base import norm_dims, tensor_geo
from .elementwise import pointwise

__all__ = [
    "aten_select", "aten_slice", "cat", "expand", "getitem", "movedim", "permute", "repeat", "reshape",
    "reshape_with_size", "split", "stack", "transpose"
]


def reshape(call: Call) -> Geo:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze, from the input and output shapes.

    Dims are matched in row-major order; a spatial dim that survives intact keeps
    its track, one that is merged with or split into other dims loses it (the
    result depends on the whole axis, as after flatten).
    """
    g = tensor_geo(call, 0, "input")
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
    g = tensor_geo(call)
    order = _method_dims(call) if call.node.op == "call_method" else list(call.arg(1, "dims"))
    return g.with_dims(g.dims[d % g.rank] for d in order)


def transpose(call: Call) -> Geo:
    g = tensor_geo(call)
    a, b = call.arg(1, "dim0") % g.rank, call.arg(2, "dim1") % g.rank
    dims = list(g.dims)
    dims[a], dims[b] = dims[b], dims[a]
    return g.with_dims(dims)


def movedim(call: Call) -> Geo:
    g = tensor_geo(call)
    src, dst = call.arg(1, "source"), call.arg(2, "destination")
    order = list(range(g.rank))
    src, dst = norm_dims(src, g.rank), norm_dims(dst, g.rank)
    rest = [d for d in order if d not in src]
    result: list[int | None] = [None] * g.rank
    for s, d in zip(src, dst):
        result[d] = s
    it = iter(rest)
    order = [r if r is not None else next(it) for r in result]
    return g.with_dims(g.dims[d] for d in order)


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
    return _indexed(call, g, index if isinstance(index, tuple) else (index,))


def aten_slice(call: Call) -> Geo:
    """aten's ``slice.Tensor(self, dim, start, end, step)`` (torch.export graphs): ``x[..., start:end:step]``."""
    g = tensor_geo(call)
    dim = call.arg(1, "dim", 0) % g.rank
    return _indexed(call, g, (slice(None),) * dim + (slice(call.arg(2, "start", None), call.arg(3, "end", None),
                                                               call.arg(4, "step", 1)),))


def aten_select(call: Call) -> Geo:
    """aten's ``select.int(self, dim, index)`` (torch.export graphs): ``x[..., index]``."""
    g = tensor_geo(call)
    dim = call.arg(1, "dim") % g.rank
    return _indexed(call, g, (slice(None),) * dim + (call.arg(2, "index"),))


def _indexed(call: Call, g: TensorGeom, index: tuple) -> Geo:
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
    g = tensor_geo(call)
    unbind = call.node.target in ("unbind", torch.unbind) or getattr(call.node.target, "__name__", "").startswith("unbind")
    dim = call.arg(1, "dim", 0) if unbind else call.arg(2, "dim", 0)
    if g.dims[dim % g.rank] is not None:
        raise RuleError("splitting along a spatial dim")
    return tuple(g for _ in call.out)


def expand(call: Call) -> Geo:
    """expand/expand_as/broadcast_to: new leading dims, and size-1 dims stretched.

    Stretching a collapsed (global) or non-spatial dim is exact; stretching a local
    spatial dim of size 1 would make every position read the same pixel, which no
    periodic map describes.
    """
    g = tensor_geo(call)
    offset = len(call.out_shape) - g.rank
    for d, (t, n) in enumerate(zip(g.dims, call.in_shape)):
        if t is not None and t.map is not None and n == 1 and call.out_shape[d + offset] != 1:
            raise RuleError("broadcasting a local spatial dim of size 1")
    return g.with_dims([None] * offset + list(g.dims))


def repeat(call: Call) -> Geo:
    """repeat/tile/repeat_interleave: copies along non-spatial dims keep the geometry; tiling space is unknown."""
    g = tensor_geo(call)
    if len(call.out_shape) < g.rank:
        raise RuleError("repeat that flattens the input")
    offset = len(call.out_shape) - g.rank
    for d, (t, n) in enumerate(zip(g.dims, call.in_shape)):
        if t is not None and call.out_shape[d + offset] != n:
            raise RuleError("tiling along a spatial dim")
    return g.with_dims([None] * offset + list(g.dims))


def reshape_with_size(call: Call) -> Geo:
    """torchvision MViT's ``_unsqueeze``: ``(x.unsqueeze(d) or x, x.dim())`` — a reshape and a plain int."""
    return reshape(replace(call, out=call.out[0])), None
