"""What every rule module shares: the :class:`Rule` record and helpers for reading a call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, bound_note, has_factors, regroup
from ..tensor import Digit, Geo, TensorGeom, Track

__all__ = ["Rule", "RuleFn", "RuleError", "bound", "compose", "lose", "mix_channels", "norm_dims", "ntuple",
           "slide_or_bound", "spatial", "tensor_geo"]

RuleFn = Callable[[Call], Geo]


@dataclass(frozen=True)
class Rule:
    """A geometry rule and what shape propagation may assume about the op's output.

    ``shape``: ``"same"`` — the output has the first argument's shape (norms,
    activations, softmax); ``"broadcast"`` — elementwise, so the output has the
    first argument's shape whenever every tensor argument has it; a function
    ``(module, args, kwargs) -> output`` that builds the (meta) output from the
    module's configuration, for ops too slow to run even on the meta device
    (recurrences step once per position); ``None`` — run it.

    ``macs``: with a ``shape`` function, ``(module, args, kwargs) -> int`` gives the op's
    multiply-accumulates from its configuration, since such an op is never run for counting either.

    ``whole``: tracing keeps modules with this rule as one node even where fx could
    trace through them — blocks whose inner reshapes (window partitions) would lose
    the geometry that the rule knows exactly.

    ``factors``: the rule understands dims that carry factors of spatial axes
    (:mod:`~rffsurgery.geometry.factors`), as most do.  For a rule with ``factors=False``
    (blocks that partition windows themselves) the propagation pass reports such axes
    global before calling it, with a note (an outer bound).
    """

    fn: RuleFn
    shape: str | Callable[[Any, tuple, dict], Any] | None = None
    macs: Callable[[Any, tuple, dict], int] | None = None
    name: str = ""
    whole: bool = False
    mixed: bool = False  # returns a tuple of a tensor and plain values (torchvision MViT's ``_unsqueeze``)
    factors: bool = True  # follows dims that carry factors of axes (tensor.Packed); False: they are lost first


def tensor_geo(call: Call, index: int = 0, name: str = "input") -> TensorGeom:
    g = call.geo(index, name)
    if not isinstance(g, TensorGeom):
        raise RuleError(f"argument {name!r} is not a traced tensor")
    return g


def ntuple(value: Any, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(value) * n
        if len(value) != n:
            raise RuleError(f"expected {n} values, got {value!r}")
        return tuple(value)
    return (value,) * n


def spatial(call: Call, n: int, maps: Iterable[AxisMap | None], g: TensorGeom | None = None,
            groups: int | None = None) -> TensorGeom:
    """Apply one window map to each of the last ``n`` dims of the input (conv, pool, pad…).

    A ``None`` map leaves a dim as it is.  An op that mixes channels never widens a
    spatial receptive field — unless the channels carry factors of an axis (after
    space-to-depth): ``groups`` says that the op mixes channels in that many groups
    (a conv), and the factors it mixes are summed away (:func:`mix_channels`).
    """
    g = g or tensor_geo(call)
    if has_factors(g):
        return _spatial_factors(call, n, list(maps), g, groups)
    dims = list(g.dims)
    for d, m in zip(range(len(dims) - n, len(dims)), maps):
        t = dims[d]
        if m is None or t is None or t.map is None:
            continue
        dims[d] = Track(t.axis, t.map.then(m))
    return g.with_dims(dims)


def compose(g: TensorGeom, maps: dict[int, AxisMap]) -> TensorGeom:
    """Compose the map of each listed dim with ``maps[dim]``; dims without a local map stay as they are."""
    dims = list(g.dims)
    for d, m in maps.items():
        t = dims[d]
        if t is not None and t.map is not None:
            dims[d] = Track(t.axis, t.map.then(m))
    return g.with_dims(dims)


def lose(g: TensorGeom, dims: Iterable[int], keep_collapsed: bool) -> list[Track | None]:
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


def norm_dims(dims: Any, rank: int) -> list[int]:
    if dims is None:
        return list(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return sorted(d % rank for d in dims)


def bound(call: Call, what: str, spread: Spread, axes: Iterable[int]) -> None:
    """Lose ``axes`` in ``spread`` (reported global, an outer bound) and say so on the node."""
    axes = set(axes)
    if axes:
        for a in axes:
            spread.lose(a)
        call.notes.append(bound_note(what, axes))


def slide_or_bound(call: Call, spread: Spread, dim: int, m: AxisMap, size: int, what: str) -> bool:
    """Slide the window map ``m`` along ``dim`` of ``spread`` (now ``size`` long); where the factors that dim
    merges do not allow it, lose them (:func:`bound`, ``what`` names the op).  Whether it slid."""
    if spread.slide(dim, m, size):
        return True
    bound(call, what, spread, spread.axes_in(dim))
    return False


def mix_channels(call: Call, spread: Spread, dim: int, groups: int, out_channels: int) -> None:
    """A conv's channel mixing on a spread whose channel dim ``dim`` may carry factors (space-to-depth).

    Each output channel reads the input channels of its group: the factors inside a
    group are summed away, the group index passes to the output channels, whose new
    offset within the group is a plain factor.  Channels cut into groups across a
    factor are not followed (an outer bound: every factor is summed).
    """
    channels = spread.dims[dim]
    if not isinstance(channels, list) or not spread.axes_in(dim):
        return
    size = math.prod(d.size for d in channels)
    parts = regroup(channels, [groups, size // groups]) if size % groups == 0 else None
    if parts is None or spread.lead[dim] or spread.trail[dim]:
        bound(call, "channels grouped across a factor", spread, spread.axes_in(dim))
        parts = [[], list(spread.dims[dim])]
        spread.lead[dim] = spread.trail[dim] = 0
    n_outer = len(parts[0])
    spread.dims[dim] = [*parts[0], *parts[1]]
    for a in {d.axis for d in parts[1] if d.axis is not None}:
        spread.remove(a, {d.place for d in parts[1] if d.axis == a})
    spread.dims[dim] = [*spread.dims[dim][:n_outer], Digit(None, 1, out_channels // groups)]


def _spatial_factors(call: Call, n: int, maps: list[AxisMap | None], g: TensorGeom, groups: int | None) -> TensorGeom:
    spread = Spread.of(g, call.in_shape)
    rank = g.rank
    if groups is not None and rank > n:
        mix_channels(call, spread, rank - n - 1, groups, call.out_shape[rank - n - 1])
    for k, m in zip(range(rank - n, rank), maps):
        if m is not None and spread.axes_in(k):
            slide_or_bound(call, spread, k, m, call.out_shape[k], "a window sliding along a dim that merges factors")
    return spread.geom(g, call.out_shape)
