"""What every rule module shares: the :class:`Rule` record and helpers for reading a call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom, Track

__all__ = ["Rule", "RuleFn", "RuleError", "compose", "lose", "norm_dims", "ntuple", "spatial", "tensor_geo"]

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
    """

    fn: RuleFn
    shape: str | Callable[[Any, tuple, dict], Any] | None = None
    macs: Callable[[Any, tuple, dict], int] | None = None
    name: str = ""
    whole: bool = False
    mixed: bool = False  # returns a tuple of a tensor and plain values (torchvision MViT's ``_unsqueeze``)


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


def spatial(call: Call, n: int, maps: Iterable[AxisMap | None], g: TensorGeom | None = None) -> TensorGeom:
    """Apply one window map to each of the last ``n`` dims of the input (conv, pool, pad…).

    A ``None`` map leaves a dim as it is.  The channel dim is untouched: an op that
    mixes channels never widens a spatial receptive field.
    """
    g = g or tensor_geo(call)
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
