"""Spatial axes split into factors and merged with others by reshapes (mixed radix).

A window partition ``(B, C, H, W) → (B·H/w·W/w, w·w, C)`` does not lose the image:
the window index and the offset inside the window are two *digits* of each
axis, ``u = q·w + r``, sitting in different dims.  :class:`Spread` is a tensor's
layout written out as digit lists, the working form in which reshapes deal digits
out to new dims (:func:`regroup`) and ops act on exactly the digits a dim carries:

* :meth:`Spread.remove` — the digits are summed away (a Linear over a flattened
  patch, a mean over a window's tokens, a conv over sub-pixel channels, the keys of
  attention): the axis keeps its other digits, and a unit of the smaller radix
  reads every unit that agrees with it on them — its window;
* :meth:`Spread.slide` — a conv, pool, pad or resize along a dim of one digit (the
  position of a block after space-to-depth, a window's offsets);
* :meth:`Spread.promote` — plain factors under an axis's top digit refine it
  (depth-to-space);
* :meth:`Spread.lose` — the engine cannot follow the factors (a conv sliding along
  a dim that merges two axes): the axis is reported global, an outer bound, and a
  note says so (:func:`bound_note`).

Summing every digit of an axis (attention over all tokens) leaves no local
geometry: the axis is global; so is one where every unit ends up reading the same
span (:func:`uniform`).  :meth:`Spread.geom` brings a layout back to the canonical
:class:`~.tensor.TensorGeom`: an axis that is whole again in one dim is a plain
:class:`~.tensor.Track`, everything else a :class:`~.tensor.Packed` dim with the
axis's map in ``TensorGeom.packed``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

from .algebra import AxisMap
from .call import RuleError
from .tensor import Digit, Packed, TensorGeom, Track

__all__ = ["BOUND", "Spread", "bound_note", "has_factors", "regroup", "uniform"]

BOUND = "reported global from here (an outer bound)"


def bound_note(what: str, axes: Iterable[int]) -> str:
    """The note of a node where factors of spatial axes could not be followed (the sweep counts these)."""
    names = ", ".join(map(str, sorted(set(axes))))
    return f"{what}: spatial axis {names} split or merged by a reshape is {BOUND}"


def has_factors(g: object) -> bool:
    """Whether a geometry has dims carrying factors of spatial axes (their axes' maps are in ``packed``)."""
    return isinstance(g, TensorGeom) and bool(g.packed)


@dataclass
class Spread:
    """A tensor's layout as editable digit lists, with one map per spatial axis.

    A dim is a list of digits, most significant first, or a :class:`~.tensor.Track`
    without a local map (collapsed or whole), kept as it is.
    """

    dims: list[list[Digit] | Track]
    lead: list[int]
    trail: list[int]
    maps: dict[int, AxisMap | None]

    @classmethod
    def of(cls, g: TensorGeom, shape: Sequence[int]) -> "Spread":
        dims: list = []
        lead, trail = [0] * len(shape), [0] * len(shape)
        maps = dict(g.packed)
        for k, (t, n) in enumerate(zip(g.dims, shape)):
            if t is None:
                dims.append([Digit(None, 1, n)])
            elif isinstance(t, Track):
                if t.map is None:
                    dims.append(t)
                else:
                    dims.append([Digit(t.axis, 1, n)])
                    maps[t.axis] = t.map
            else:
                dims.append(list(t.digits))
                lead[k], trail[k] = t.lead, t.trail
        return cls(dims, lead, trail, maps)

    # -- reading ------------------------------------------------------------
    def digits_of(self, axis: int) -> list[Digit]:
        """The axis's digits, least significant first."""
        found = [d for dim in self.dims if isinstance(dim, list) for d in dim if d.axis == axis]
        return sorted(found, key=lambda d: d.place)

    def digits_at(self, k: int, size: int) -> list[Digit] | None:
        """Dim ``k`` (of ``size`` elements) as digits to regroup: an axis that is already global there (a
        collapsed or whole track) is one plain factor; ``None`` when the dim has extra elements."""
        dim = self.dims[k]
        if isinstance(dim, Track):
            return [Digit(None, 1, size)]
        return None if self.lead[k] or self.trail[k] else list(dim)

    def axes_in(self, k: int) -> set[int]:
        dim = self.dims[k]
        return {d.axis for d in dim if d.axis is not None} if isinstance(dim, list) else set()

    # -- editing ------------------------------------------------------------
    def _rewrite(self, axis: int, new: dict[int, Digit]) -> None:
        """Replace the axis's digits, found by place, with ``new[place]``."""
        for dim in self.dims:
            if isinstance(dim, list):
                for i, d in enumerate(dim):
                    if d.axis == axis:
                        dim[i] = new[d.place]

    def lose(self, axis: int) -> None:
        """The axis becomes global: its digits stay as plain (summed) factors."""
        self.maps.pop(axis, None)
        self._rewrite(axis, {d.place: Digit(None, 1, d.size) for d in self.digits_of(axis)})

    def remove(self, axis: int, places: set[int]) -> None:
        """Sum the digits at ``places`` away: the axis's units are now spelled by the others.

        A unit of the new radix reads the old units that share its remaining digits,
        with every value of the removed ones; summing all of them away leaves no local
        geometry (the axis is global).
        """
        digits = self.digits_of(axis)
        mixed = [d for d in digits if d.place in places]
        if not mixed:
            return
        keep = [d for d in digits if d.place not in places]
        if not keep:
            self.lose(axis)
            return
        new = {d.place: Digit(None, 1, d.size) for d in mixed}
        acc = 1
        for d in keep:
            new[d.place] = Digit(axis, acc, d.size)
            acc *= d.size
        top = mixed[-1]
        low = [d for d in keep if d.place < top.place]
        offsets = _offsets(mixed)

        def members(j: int) -> list[int]:
            base = 0
            for d in low:
                j, value = divmod(j, d.size)
                base += value * d.place
            return [base + o for o in offsets]

        m = self.maps.get(axis)
        if m is not None:
            self.maps[axis] = m.gather(math.prod(d.size for d in low), top.place * top.size, members)
        self._rewrite(axis, new)

    def sum_away(self, k: int) -> None:
        """Sum dim ``k`` away (a reduction, a Linear over it): every factor it carries is :meth:`remove` d."""
        dim = self.dims[k]
        if isinstance(dim, list):
            for a in self.axes_in(k):
                self.remove(a, {x.place for x in dim if x.axis == a})

    def slide(self, k: int, m: AxisMap, size: int) -> bool:
        """Apply a window map ``m`` (conv, pool, pad, resize) along dim ``k``, which becomes ``size`` long.

        The dim must hold one digit of one axis, or the window must be 1×1 or tile the
        dim's lowest digit without crossing it (``False`` otherwise: the caller loses
        the axis).  A digit above the axis's lower digits moves in steps of its
        place, so a unit keeps its lower digits: after space-to-depth a 3×3 depthwise
        conv makes unit ``u = q·r + j`` read ``(q−1)·r + j … (q+1)·r + j``.  A digit
        below a higher one (the offset inside a window) is clipped to the window: a
        window's edge is padding to the op, not the next window.
        """
        self.promote(k)
        dim = self.dims[k]
        if not isinstance(dim, list) or self.lead[k] or self.trail[k]:
            return False
        if len(dim) > 1:
            dim = self.dims[k] = [d for d in dim if d.size != 1] or dim[:1]
        n_dim = math.prod(d.size for d in dim)
        if m.period == 1 and m.step == 1 and m.lo == m.hi == (0,) and size == n_dim:
            return True  # a 1×1 window moves nothing, whatever the dim holds
        x = dim[-1]
        if x.axis is None or len(dim) > 1 and not _tiles(m, x.size, size, n_dim):
            return False
        if len(dim) > 1:  # windows that tile the lowest digit (pooling tokens within a row)
            size = x.size // m.step
        digits = self.digits_of(x.axis)
        inner = self.maps.get(x.axis)
        top = x.place == digits[-1].place
        p, n = x.place, x.size
        if top:
            period, step = m.period * p, m.step * p
        else:
            period, step = size * p, n * p

        def members(j: int) -> list[int]:
            d_out, low = divmod(j, p)
            lo, hi = m.interval(d_out)
            if not top:
                lo, hi = max(lo, 0), min(hi, n - 1)
            return [d * p + low for d in range(lo, hi + 1)]

        if not top and any(not members(j) for j in range(period)):
            return False  # a unit that reads only the op's padding
        if inner is not None:
            self.maps[x.axis] = inner.gather(period, step, members)
        acc, new = 1, {}
        for d in digits:
            new[d.place] = Digit(x.axis, acc, size if d is x else d.size)
            acc *= new[d.place].size
        self._rewrite(x.axis, new)
        return True

    # -- back to a TensorGeom ---------------------------------------------------
    def geom(self, base: TensorGeom, shape: Sequence[int], global_ctx: bool = False) -> TensorGeom:
        """The canonical geometry of a tensor of ``shape``: whole axes as tracks, the rest packed.

        Dims without digits of any axis take their size from ``shape`` (an op may have
        changed the channels); a dim whose digits do not make up its size is a bug in
        a rule, reported as a :class:`~.call.RuleError`.
        """
        for k, (dim, n) in enumerate(zip(self.dims, shape)):
            if not isinstance(dim, list):
                continue
            if not any(d.axis is not None for d in dim):
                self.dims[k], self.lead[k], self.trail[k] = [Digit(None, 1, n)], 0, 0
            elif self.lead[k] + math.prod(d.size for d in dim) + self.trail[k] != n:
                raise RuleError(f"dim {k} of size {n} laid out as {dim}")
        # a digit of one value says nothing, unless it is a dim of its own: an axis reduced to one position
        dims = [[d for d in dim if d.size != 1] if isinstance(dim, list) and len(dim) > 1 else dim
                for dim in self.dims]
        dims = [_merge(dim) if isinstance(dim, list) else dim for dim in dims]
        sizes: dict[int, int] = {}
        for dim in dims:
            if isinstance(dim, list):
                for d in dim:
                    if d.axis is not None:
                        sizes[d.axis] = sizes.get(d.axis, 1) * d.size
        out: list = []
        packed: set[int] = set()
        for k, dim in enumerate(dims):
            if not isinstance(dim, list):
                out.append(dim)
                continue
            axes = {d.axis for d in dim if d.axis is not None}
            if not axes:
                out.append(None)
            elif (len(dim) == 1 and not self.lead[k] and not self.trail[k] and dim[0].place == 1
                  and dim[0].size == sizes[dim[0].axis]):
                m = self.maps[dim[0].axis]
                out.append(Track(dim[0].axis, m, whole=m is None))
            else:
                out.append(Packed(tuple(dim), self.lead[k], self.trail[k]))
                packed |= axes
        packed_maps = tuple((a, self.maps[a]) for a in sorted(packed))
        local = any(m is not None for _, m in packed_maps) or any(isinstance(t, Track) and t.map is not None
                                                                   for t in out)
        if not local and (packed_maps or any(isinstance(t, Track) and t.whole for t in out)):
            return TensorGeom.everywhere(len(out))  # every axis read whole by every unit: no layout to keep
        return TensorGeom(tuple(out), base.global_ctx or global_ctx, base.const, packed_maps, base.whole)

    def promote(self, k: int) -> None:
        """Plain factors right below an axis's most significant digit in dim ``k`` refine that axis (depth-to-space).

        ``(B, C·r, H, W) → (B, C, H·r, W)`` puts r channel offsets under each row:
        a window sliding along the dim sees ``H·r`` positions, unit ``u`` reading row
        ``⌊u/r⌋`` — the map of a nearest upsampling by r, as ``pixel_shuffle`` has.
        Done when a rule needs the dim as one axis (a conv, a pool, a pixel shuffle);
        until then the offsets stay plain factors, summed like channels.
        """
        dim = self.dims[k]
        if not isinstance(dim, list) or self.lead[k] or self.trail[k]:
            return
        for i in range(1, len(dim)):
            x, y = dim[i - 1], dim[i]
            if y.axis is not None or x.axis is None or self.maps.get(x.axis) is None:
                continue
            digits = self.digits_of(x.axis)
            if x.place != digits[-1].place:
                continue
            p, s = x.place, y.size
            self.maps[x.axis] = self.maps[x.axis].gather(p * s, p, lambda j, p=p: [j % p])
            self._rewrite(x.axis, {d.place: Digit(x.axis, d.place * s if d.place >= p else d.place, d.size)
                                   for d in digits})
            dim[i] = Digit(x.axis, p, s)
        self.dims[k] = _merge(dim)


def _tiles(m: AxisMap, low: int, size: int, n_dim: int) -> bool:
    """Whether ``m`` cuts a dim of ``n_dim`` elements into ``size`` windows that stay inside its lowest digit
    (``low`` values): kernel = stride, no padding."""
    k = m.step
    return m.period == 1 and m.lo == (0,) and m.hi == (k - 1,) and low % k == 0 and size * k == n_dim


def uniform(m: AxisMap, units: int) -> bool:
    """Whether all ``units`` (more than one) read the same span: each reads everything, the whole axis.

    What attention over every token gives, and MaxViT's grid attention after its
    block attention on a small map; such an axis is global.
    """
    first = m.interval(0)
    return units > 1 and all(m.interval(u) == first for u in range(1, units))


def _offsets(mixed: Sequence[Digit]) -> list[int]:
    """Every combination of values of the mixed digits, as a unit offset."""
    return sorted({sum(v * d.place for v, d in zip(values, mixed))
                   for values in itertools.product(*(range(d.size) for d in mixed))})


def _merge(dim: list[Digit]) -> list[Digit]:
    """Adjacent plain factors, and adjacent digits of one axis in radix order, become one digit."""
    out: list[Digit] = []
    for d in dim:
        if out:
            x = out[-1]
            if x.axis is None and d.axis is None:
                out[-1] = Digit(None, 1, x.size * d.size)
                continue
            if x.axis is not None and x.axis == d.axis and x.place == d.place * d.size:
                out[-1] = Digit(d.axis, d.place, x.size * d.size)
                continue
        out.append(d)
    return out


def regroup(digits: Sequence[Digit], sizes: Sequence[int]) -> list[list[Digit]] | None:
    """Deal row-major digits out to dims of ``sizes``, splitting a digit where a dim boundary cuts it.

    A digit of ``n = n1·n2`` values at place p splits into its high part (n1 values
    at place p·n2) and its low part (n2 values at place p).  ``None`` when the new
    sizes cut across digits in a way no split describes (a dim of 6 from digits 4·3).
    """
    queue = deque(d for d in digits if d.size != 1)
    out: list[list[Digit]] = []
    for m in sizes:
        dim: list[Digit] = []
        need = m
        while need > 1:
            if not queue:
                return None
            d = queue.popleft()
            if need % d.size == 0:
                dim.append(d)
                need //= d.size
            elif d.size % need == 0:
                low = d.size // need
                if d.axis is None:
                    dim.append(Digit(None, 1, need))
                    queue.appendleft(Digit(None, 1, low))
                else:
                    dim.append(Digit(d.axis, d.place * low, need))
                    queue.appendleft(Digit(d.axis, d.place, low))
                need = 1
            else:
                return None
        out.append(dim)
    return out if not queue else None
