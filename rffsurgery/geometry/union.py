"""The union of tensors combined pointwise with broadcasting (add, mul, cat, where…)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .algebra import AxisMap
from .factors import Spread, bound_note, has_factors
from .tensor import Digit, Misaligned, TensorGeom, Track, Unknown

__all__ = ["UnionResult", "merge_maps", "unite"]

MISALIGNED = ("branches meet at different strides {} and {}: their units do not line up (one branch was "
              "resized by a non-integer ratio, e.g. a gate pooled and interpolated back to an odd size), so no "
              "receptive field describes this node exactly")


@dataclass
class UnionResult:
    geom: TensorGeom | Unknown | Misaligned
    notes: list[str] = field(default_factory=list)


def merge_maps(maps: list[AxisMap], axis: int, notes: list[str]) -> AxisMap | Misaligned:
    """The hull of branch maps of one axis, or :class:`Misaligned` when their strides differ."""
    merged = maps[0]
    for m in maps[1:]:
        if not merged.aligned_with(m):
            return Misaligned(MISALIGNED.format(merged.stride, m.stride))
        if not merged.same_centres(m):
            notes.append(f"axis {axis}: branch centres differ")
        merged = merged.union(m)
    return merged


def unite(inputs: list[tuple[TensorGeom, tuple[int, ...]]], out_shape: tuple[int, ...]) -> UnionResult:
    """Union of several tensors combined pointwise with broadcasting (add, mul, cat, where…).

    Dims are aligned from the right, as broadcasting does.  An input that does not
    keep an axis local — collapsed to size 1 and broadcast (a squeeze-excitation
    gate), or reduced away — depends on the whole axis: the result keeps the local
    maps of the other inputs and is marked ``global_ctx``.  An input whose dim is
    ``whole`` (every unit reads the whole axis itself, after a recurrence) makes
    that dim global in the result.  Branches that carry the same axis in different
    dims, or at different strides, are reported, never guessed.
    """
    rank = len(out_shape)
    live = [(g, s) for g, s in inputs if not g.const]
    if not live:
        return UnionResult(TensorGeom.constant(rank))
    if any(g.whole for g, _ in live):
        return UnionResult(TensorGeom.everywhere(rank))
    if any(has_factors(g) for g, _ in live):
        return _unite_factors(live, out_shape)
    notes: list[str] = []
    maps: list[list[AxisMap]] = [[] for _ in range(rank)]
    axis_at: list[int | None] = [None] * rank
    whole = [False] * rank
    global_ctx = False
    local_axes: list[set[int]] = []
    for g, shape in live:
        global_ctx |= g.global_ctx
        offset = rank - len(shape)
        mine: set[int] = set()
        for d, (t, n) in enumerate(zip(g.dims, shape)):
            if t is None:
                continue
            od = d + offset
            if axis_at[od] not in (None, t.axis):
                return UnionResult(Unknown(f"branches carry spatial axes {axis_at[od]} and {t.axis} in one dim"))
            axis_at[od] = t.axis
            whole[od] |= t.whole
            if t.map is not None and not (n == 1 and out_shape[od] != 1):
                maps[od].append(t.map)
                mine.add(t.axis)
        local_axes.append(mine)
    every = set().union(*local_axes)
    global_ctx |= any(mine != every for mine in local_axes)
    dims: list[Track | None] = []
    for od in range(rank):
        if axis_at[od] is None:
            dims.append(None)
            continue
        if not maps[od] or whole[od]:
            dims.append(Track(axis_at[od], None, whole[od]))
            continue
        merged = merge_maps(maps[od], axis_at[od], notes)
        if isinstance(merged, Misaligned):
            return UnionResult(merged)
        dims.append(Track(axis_at[od], merged))
    return UnionResult(TensorGeom(tuple(dims), global_ctx=global_ctx), notes)


def _unite_factors(live: list[tuple[TensorGeom, tuple[int, ...]]], out_shape: tuple[int, ...]) -> UnionResult:
    """:func:`unite` when some input carries factors of axes: inputs must lay each axis out alike.

    Every dim that carries digits must carry the same digits in each input that has
    any there; an input that lays an axis out differently (a branch that merged it
    another way) is not followed: that axis is lost in every input, which reports it
    global (an outer bound) with a note.
    """
    rank = len(out_shape)
    notes: list[str] = []
    spreads: list[Spread] = []
    for g, shape in live:
        sp = Spread.of(g, shape)
        offset = rank - len(shape)
        sp.dims = [[] for _ in range(offset)] + sp.dims
        sp.lead, sp.trail = [0] * offset + sp.lead, [0] * offset + sp.trail
        for od in range(offset, rank):
            if shape[od - offset] == 1 and out_shape[od] != 1 and isinstance(sp.dims[od], list):
                for a in sp.axes_in(od):  # one unit broadcast to every position: not local
                    sp.lose(a)
        spreads.append(sp)
    lost: set[int] = set()
    promoted = False
    for _ in range(rank + 2):
        layout: list = [None] * rank
        places: dict[int, set] = {}
        clash: set[int] = set()
        for sp in spreads:
            for od, dim in enumerate(sp.dims):
                if isinstance(dim, list) and any(d.axis is not None for d in dim):
                    key = (tuple(dim), sp.lead[od], sp.trail[od])
                    if layout[od] is None:
                        layout[od] = key
                    elif layout[od] != key:
                        clash |= sp.axes_in(od) | {d.axis for d in layout[od][0] if d.axis is not None}
                    for a in sp.axes_in(od):
                        where = frozenset(k for k, dm in enumerate(sp.dims) if isinstance(dm, list) and a in sp.axes_in(k))
                        if places.setdefault(a, where) != where:
                            clash.add(a)
        if not clash:
            break
        if not promoted:  # a window's copies under its index (expand, then windows back) may read as upsampling
            promoted = True
            for sp in spreads:
                for od in range(rank):
                    sp.promote(od)
            continue
        for sp in spreads:
            for a in clash:
                sp.lose(a)
        lost |= clash
    if lost:
        notes.append(bound_note("branches lay the factors out differently", lost))
    opaque: list[Track | None] = [None] * rank
    for sp in spreads:
        for od, dim in enumerate(sp.dims):
            if isinstance(dim, Track) and (opaque[od] is None or dim.whole):
                opaque[od] = dim
    per_axis: dict[int, list[AxisMap | None]] = {}
    local_axes: list[set[int]] = []
    for sp in spreads:
        mine = {a for a, m in sp.maps.items() if m is not None and sp.digits_of(a)}
        for a in sp.maps:
            if sp.digits_of(a):
                per_axis.setdefault(a, []).append(sp.maps[a])
        local_axes.append(mine)
    every = set().union(*local_axes)
    global_ctx = any(g.global_ctx for g, _ in live) or any(mine != every for mine in local_axes)
    maps: dict[int, AxisMap | None] = {}
    for a, found in per_axis.items():
        if any(m is None for m in found):
            maps[a] = None
            continue
        merged = merge_maps(found, a, notes)
        if isinstance(merged, Misaligned):
            return UnionResult(merged)
        maps[a] = merged
    out = Spread([], [0] * rank, [0] * rank, maps)
    for od in range(rank):
        if layout[od] is not None:
            digits, out.lead[od], out.trail[od] = layout[od]
            out.dims.append(list(digits))
            t = opaque[od]
            if t is not None and t.whole and len(digits) == 1 and digits[0].axis == t.axis:
                maps[t.axis] = None
        elif opaque[od] is not None:
            out.dims.append(opaque[od])
        else:
            out.dims.append([Digit(None, 1, out_shape[od])])
    return UnionResult(out.geom(TensorGeom((), global_ctx=global_ctx), out_shape), notes)
