"""Functions and modules kept out of the fx graph, replayed op by op through the rules table.

timm keeps its window and grid reshapes out of fx graphs (``window_reverse``,
``grid_reverse``, NesT's ``deblockify``, MViT-v2's pooling reshapes), and some
blocks cannot be traced at all (Twins' ``LocallyGroupedAttn`` pads by an amount
computed from its input's size; EfficientViT's ``LiteMLA`` switches autocast off, and
replayed it is exact: each query's local multi-scale path plus the global sums of its
linear attention, where a whole-module rule could only say "global").  The rules table already knows every op inside
them (views, permutes, slices, cat, linear layers, attention), and the pass has
their concrete (meta) arguments, so :func:`replay` runs the function or module
once and applies each op's rule as it executes — the geometry fx would have
given had it traced through.  An op inside without a rule makes the node unknown.
"""

from __future__ import annotations

import operator
from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch.fx.node import map_aggregate
from torch.overrides import TorchFunctionMode

from ...trace.meta import run_op, to_meta
from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom
from .base import RuleFn

__all__ = ["replay"]


class _Replay(TorchFunctionMode):
    """Applies the rule of every tensor op the function runs, keyed by the identity of the tensors."""

    def __init__(self, call: Call, lookup: Callable[[str, Any], Any]) -> None:
        super().__init__()
        self.call = call
        self.lookup = lookup
        self.geos: dict[int, Any] = {}
        self.alive: list[Any] = []  # keeps every tensor seen alive, so that no id is reused

    def geo_of(self, value: Any) -> Any:
        return self.geos.get(id(value)) if isinstance(value, torch.Tensor) else None

    def record(self, value: Any, geo: Any) -> None:
        if isinstance(value, torch.Tensor) and isinstance(geo, TensorGeom):
            self.geos[id(value)] = geo
            self.alive.append(value)
        elif isinstance(value, (tuple, list)) and isinstance(geo, (tuple, list)):
            for v, g in zip(value, geo):
                self.record(v, g)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) and not (isinstance(out, (tuple, list)) and out
                                                       and all(isinstance(o, torch.Tensor) for o in out)):
            return out  # sizes, dtypes: not geometry
        geo_args = map_aggregate(args, self.geo_of)
        geo_kwargs = map_aggregate(kwargs, self.geo_of)
        geos = [g for g in (*_leaves(geo_args), *_leaves(geo_kwargs)) if isinstance(g, TensorGeom)]
        if not geos or all(g.const for g in geos):
            self.record(out, _constant_like(out))
            return out
        self.record(out, self._apply(func, args, kwargs, geo_args, geo_kwargs, out))
        return out

    def _apply(self, func: Any, args: tuple, kwargs: dict, geo_args: Any, geo_kwargs: Any, out: Any) -> Geo:
        name = getattr(func, "__name__", "")
        if name == "__getitem__":
            op, target = "call_function", operator.getitem
        elif isinstance(args[0] if args else None, torch.Tensor) and getattr(torch.Tensor, name, None) is func:
            op, target = "call_method", name
        else:
            op, target = "call_function", func
        rule = self.lookup(op, target)
        if rule is None or not rule.factors:
            raise RuleError(f"it runs {name or func}, which has no rule for factors of axes")
        inner = Call(SimpleNamespace(op=op, target=target), None, args, kwargs, geo_args, geo_kwargs, out,
                     self.call.notes)
        return rule.fn(inner)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)):
        return [x for item in tree for x in _leaves(item)]
    if isinstance(tree, dict):
        return [x for item in tree.values() for x in _leaves(item)]
    return [tree]


def _constant_like(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return TensorGeom.constant(out.dim())
    return tuple(_constant_like(o) for o in out)


def replay(lookup: Callable[[str, Any], Any]) -> RuleFn:
    """The rule that runs the node's function on its (meta) arguments, applying ``lookup(op, target)``'s rule
    to each op it runs (the table passes its own lookup: it imports this module)."""

    def rule(call: Call) -> Geo:
        mode = _Replay(call, lookup)
        args, kwargs = to_meta(call.args), to_meta(call.kwargs)
        for value, geo in zip((*args, *kwargs.values()), (*call.geo_args, *call.geo_kwargs.values())):
            mode.record(value, geo)
        with mode:
            out = run_op(call.node.op, call.node.target, call.module, args, kwargs)
        return map_aggregate(out, mode.geo_of)

    rule.__doc__ = __doc__
    return rule
