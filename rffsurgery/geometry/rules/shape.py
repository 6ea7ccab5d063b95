"""Ops that move, merge, slice or copy dims: reshapes, permutes, indexing, cat/stack/split, expand/repeat."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import torch

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, has_factors, regroup
from ..tensor import Digit, Geo, Packed, TensorGeom, Track
from ..union import unite
from .base import bound, norm_dims, slide_or_bound, tensor_geo
from .elementwise import pointwise

__all__ = [
    "aten_select", "aten_slice", "cat", "expand", "getitem", "movedim", "permute", "repeat", "reshape",
    "reshape_with_size", "roll", "split", "stack", "transpose"
]


def reshape(call: Call) -> Geo:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze, from the input and output shapes.

    Dims are matched in row-major order; a dim that survives intact keeps its
    geometry.  Dims that are merged or split deal their digits out to the new dims
    (:func:`~rffsurgery.geometry.factors.regroup`): a spatial axis split into windows
    or merged into tokens stays exact, its unit spelled by digits in several dims.
    Only sizes that cut across digits (a dim of 6 from 4·3) lose the axes involved.
    """
    g = tensor_geo(call, 0, "input")
    src, dst = call.in_shape, call.out_shape
    groups = _reshape_groups(src, dst)
    if not has_factors(g) and all(len(gi) == 1 and len(gj) == 1 or all(g.dims[i] is None for i in gi)
                                  for gi, gj in groups):
        out: list[Track | None] = [None] * len(dst)
        for gi, gj in groups:
            if len(gi) == 1 and len(gj) == 1:
                out[gj[0]] = g.dims[gi[0]]
        return g.with_dims(out)
    spread = Spread.of(g, src)
    plans = [_regroup(spread, src, dst, gi, gj) for gi, gj in groups]
    failed = {a for (gi, _), plan in zip(groups, plans) if plan is None for i in gi for a in spread.axes_in(i)}
    if failed:
        bound(call, "reshape cuts across the factors of an axis", spread, failed)
        plans = [_regroup(spread, src, dst, gi, gj) for gi, gj in groups]
    out_spread = Spread([[] for _ in dst], [0] * len(dst), [0] * len(dst), spread.maps)
    for (gi, gj), plan in zip(groups, plans):
        for j, (dim, lead, trail) in zip(gj, plan or [([Digit(None, 1, dst[j])], 0, 0) for j in gj]):
            out_spread.dims[j], out_spread.lead[j], out_spread.trail[j] = dim, lead, trail
    return out_spread.geom(g, dst)


def _regroup(spread: Spread, src: tuple[int, ...], dst: tuple[int, ...], gi: list[int],
             gj: list[int]) -> list[tuple[Any, int, int]] | None:
    """The new dims ``gj`` (digits, lead, trail) made from the old dims ``gi``; ``None``: not expressible."""
    if len(gi) == 1 and len(gj) == 1:
        return [(spread.dims[gi[0]], spread.lead[gi[0]], spread.trail[gi[0]])]
    digits: list[Digit] = []
    for i in gi:
        dim = spread.digits_at(i, src[i])
        if dim is None:
            return None
        digits.extend(dim)
    parts = regroup(digits, [dst[j] for j in gj])
    if parts is None and not any(d.axis is not None for d in digits):
        parts = [[Digit(None, 1, dst[j])] for j in gj]
    return None if parts is None else [(part, 0, 0) for part in parts]


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
    """Concatenation of branches: the union of their intervals.

    Along a spatial dim only extra elements can join: pieces that are constant or
    already global (a class token in front of the patch tokens).  They hold no unit,
    so the dim keeps the axis, with ``lead`` / ``trail`` extra elements.
    """
    dim = call.arg(1, "dim", 0) % len(call.out_shape)
    pieces = [(g, tuple(v.shape)) for g, v in zip(call.geo(0, "tensors"), call.arg(0, "tensors"))
              if isinstance(g, TensorGeom)]
    spatial = [k for k, (g, _) in enumerate(pieces) if g.dims[dim] is not None and not g.const]
    if not spatial:
        return pointwise(call)
    k = spatial[0]
    if len(spatial) > 1 or not all(g.const or g.is_global for i, (g, _) in enumerate(pieces) if i != k):
        raise RuleError("concatenation along a spatial dim")
    main = pieces[k][0]
    before = sum(shape[dim] for _, shape in pieces[:k])
    after = sum(shape[dim] for _, shape in pieces[k + 1:])
    spread = Spread.of(main, pieces[k][1])
    if not isinstance(spread.dims[dim], list):
        raise RuleError("concatenation along a collapsed spatial dim")
    spread.lead[dim] += before
    spread.trail[dim] += after
    ctx = any(not g.const for i, (g, _) in enumerate(pieces) if i != k)
    return spread.geom(main, call.out_shape, global_ctx=ctx)


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
    """Tuple element, or tensor indexing: slices on a spatial dim crop/stride it exactly.

    On a dim with factors, a slice that keeps every unit only drops extra elements
    (``x[:, 1:]`` after a class token), and an integer or a slice picking extra
    elements only (``x[:, 0]``, the class token; ``x[:, :5]``, prefix tokens) leaves
    the dim's axes behind: those elements hold none of their units.  Other indexing
    there is not followed (an outer bound).
    """
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
    if 0 in call.out_shape:  # an empty slice (no prefix tokens) holds no unit
        return TensorGeom.constant(len(call.out_shape))
    if any(i is Ellipsis for i in index):
        at = index.index(Ellipsis)
        fill = g.rank - (len(index) - 1 - sum(i is None for i in index))
        index = index[:at] + (slice(None),) * fill + index[at + 1 :]
    dims: list = []
    gone: set[int] = set()
    lost: set[int] = set()
    d = 0
    for i in index:
        if i is None:
            dims.append(None)
            continue
        t = g.dims[d]
        size = call.in_shape[d]
        if isinstance(t, Packed):
            kept = _index_packed(t, i, size, gone, lost)
            if kept is not False:
                dims.append(kept)
        elif isinstance(i, slice):
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
    out = g.with_dims(dims)
    if not gone and not lost:
        return out
    spread = Spread.of(out, call.out_shape)
    for a in gone - lost:
        spread.lose(a)
    bound(call, "indexing inside a dim with factors", spread, lost)
    return spread.geom(out, call.out_shape)


def _index_packed(t: Packed, i: Any, size: int, gone: set[int], lost: set[int]) -> Packed | None | bool:
    """One index on a dim with factors: the new dim (``None``: a plain one), or ``False`` if the dim is gone."""
    units = size - t.lead - t.trail
    if isinstance(i, int):
        i %= size
        (gone if i < t.lead or i >= t.lead + units else lost).update(t.axes)
        return False
    if isinstance(i, slice):
        start, stop, step = i.indices(size)
        if step == 1 and start <= t.lead and stop >= t.lead + units:
            return Packed(t.digits, t.lead - start, stop - t.lead - units)
        if stop <= t.lead or start >= t.lead + units:  # only extra elements (the prefix tokens)
            gone.update(t.axes)
            return None
    reordered = _reordered(t, i)
    if reordered is not None:
        return reordered
    lost.update(t.axes)
    return None


def _reordered(t: Packed, order: Any) -> Packed | None:
    """A list index that reorders the digits of a dim (ONNX's SpaceToDepth puts the block offsets first): the
    same digits in the new order, or ``None``."""
    if t.lead or t.trail or not isinstance(order, (list, tuple)) or len(t.digits) > 5:
        return None
    sizes = [d.size for d in t.digits]
    numbers = torch.arange(len(order)).reshape(sizes) if len(order) == t.size else None
    for perm in itertools.permutations(range(len(sizes))):
        if numbers is not None and numbers.permute(perm).flatten().tolist() == list(order):
            return Packed(tuple(t.digits[p] for p in perm))
    return None


def split(call: Call) -> Geo:
    """chunk/split/unbind along a non-spatial dim: every piece keeps the geometry.

    Along a dim with factors a piece that holds every unit only drops extra elements,
    and a piece of extra elements only (MViT splits its class token off) holds none of
    the dim's units; pieces cutting through the units are not followed (an outer bound).
    """
    g = tensor_geo(call)
    unbind = call.node.target in ("unbind", torch.unbind) or getattr(call.node.target, "__name__", "").startswith("unbind")
    dim = (call.arg(1, "dim", 0) if unbind else call.arg(2, "dim", 0)) % g.rank
    t = g.dims[dim]
    if isinstance(t, Packed) and not unbind:
        return tuple(_piece(call, g, t, dim, start, piece) for start, piece in _starts(call.out, dim))
    if isinstance(t, Packed):
        spread = Spread.of(g, call.in_shape)
        bound(call, "splitting a dim with factors", spread, t.axes)
        g = spread.geom(g, call.in_shape)
    elif t is not None:
        raise RuleError("splitting along a spatial dim")
    if unbind:  # the pieces lose the dim
        g = g.with_dims(g.dims[:dim] + g.dims[dim + 1:])
    return tuple(g for _ in call.out)


def _starts(pieces: Any, dim: int) -> list[tuple[int, Any]]:
    """Each piece of a split with the index of its first element along ``dim``."""
    out, start = [], 0
    for piece in pieces:
        out.append((start, piece))
        start += piece.shape[dim]
    return out


def _piece(call: Call, g: TensorGeom, t: Packed, dim: int, start: int, piece: torch.Tensor) -> TensorGeom:
    """The geometry of one piece ``[start, start + n)`` of a dim with factors (see :func:`split`)."""
    size, n = t.size, piece.shape[dim]
    units = size - t.lead - t.trail
    shape = tuple(piece.shape)
    if start <= t.lead and start + n >= t.lead + units:
        return g.with_dims(g.dims[:dim] + (Packed(t.digits, t.lead - start, start + n - t.lead - units),)
                           + g.dims[dim + 1:])
    spread = Spread.of(g.with_dims(g.dims[:dim] + (None,) + g.dims[dim + 1:]), shape)
    if n == 0 or start + n <= t.lead or start >= t.lead + units:
        for a in t.axes:
            spread.lose(a)
    else:
        bound(call, "splitting a dim with factors", spread, t.axes)
    return spread.geom(g, shape)


def expand(call: Call) -> Geo:
    """expand/expand_as/broadcast_to: new leading dims, and size-1 dims stretched.

    Stretching a collapsed (global) or non-spatial dim is exact; stretching a local
    spatial dim of size 1 would make every position read the same pixel, which no
    periodic map describes.
    """
    g = tensor_geo(call)
    offset = len(call.out_shape) - g.rank
    for d, (t, n) in enumerate(zip(g.dims, call.in_shape)):
        if isinstance(t, Track) and t.map is not None and n == 1 and call.out_shape[d + offset] != 1:
            raise RuleError("broadcasting a local spatial dim of size 1")
    return g.with_dims([None] * offset + list(g.dims))


def repeat(call: Call) -> Geo:
    """repeat/tile/repeat_interleave: copies along non-spatial dims keep the geometry; tiling space is unknown.

    Copies along a dim with factors are not followed (an outer bound).
    """
    g = tensor_geo(call)
    if len(call.out_shape) < g.rank:
        raise RuleError("repeat that flattens the input")
    offset = len(call.out_shape) - g.rank
    tiled = [d for d, n in enumerate(call.in_shape) if g.dims[d] is not None and call.out_shape[d + offset] != n]
    if any(not isinstance(g.dims[d], Packed) for d in tiled):
        raise RuleError("tiling along a spatial dim")
    if tiled:
        spread = Spread.of(g, call.in_shape)
        bound(call, "tiling a dim with factors", spread, {a for d in tiled for a in g.dims[d].axes})
        g = spread.geom(g, call.in_shape)
    return g.with_dims([None] * offset + list(g.dims))


def roll(call: Call) -> Geo:
    """``torch.roll``: unit ``u`` of a rolled axis of n units reads unit ``(u − shift) mod n``, exactly.

    The map is a table of period n (no two units wrap alike).  Rolled back later
    (Swin's shifted windows written out) the rolls cancel, and a window that the
    roll made join both edges reads both: exact without a mask, and an outer bound
    where a mask keeps the two parts apart, which the engine does not read (the
    note says so).
    """
    g = tensor_geo(call)
    shifts, dims = call.arg(1, "shifts"), call.arg(2, "dims", None)
    if dims is None:
        raise RuleError("roll over the flattened tensor")
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    spread = Spread.of(g, call.in_shape)
    for shift, d in zip(shifts, dims):
        d %= g.rank
        n = call.in_shape[d]
        if not spread.axes_in(d) or shift % n == 0:
            continue
        table = AxisMap.from_function(n, n, lambda j, n=n, shift=shift: ((j - shift) % n,) * 2)
        if not slide_or_bound(call, spread, d, table, n, "roll along a dim that merges factors"):
            continue
        call.notes.append(f"roll by {shift} along axis {min(spread.axes_in(d))}: a window that wraps around the "
                          "edge reads both edges (an outer bound if a mask keeps them apart)")
    return spread.geom(g, call.out_shape)


def reshape_with_size(call: Call) -> Geo:
    """torchvision MViT's ``_unsqueeze``: ``(x.unsqueeze(d) or x, x.dim())`` — a reshape and a plain int."""
    return reshape(replace(call, out=call.out[0])), None
