"""One pass over the traced graph: concrete shapes and geometry for every node.

Shapes come from running the graph on the meta device (no memory, no compute),
except for ops whose rule says the output has the input's shape: their output
reuses the input's meta tensor.  On resnet50 that skips the Python-level meta
kernels of every BatchNorm and ReLU and makes the pass several times faster.
Parameters of a real model are handed to the meta run as meta views, swapped in
for the duration of one call; the model's tensors are never modified.

fx already stores nodes in topological order, so a single forward walk is the
whole DAG traversal.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import fx, nn

from ..errors import RffError
from ..trace.meta import read_attr, run_op, to_meta
from ..trace.tracer import Traced
from .call import Call, RuleError
from .factors import bound_note, has_factors
from .rules import lookup
from .tensor import Geo, Misaligned, Packed, TensorGeom, Track, Unknown

__all__ = ["NodeState", "ShapeError", "TOO_SMALL", "propagate"]


class ShapeError(RffError, RuntimeError):
    """The graph could not be run for shapes at the requested input size.

    Besides the message it says where (``node``, ``op``), whether the input was too
    small for some op (``too_small``: running on real tensors cannot help then), and
    how much the outputs computed before the failure weigh (``bytes_done`` over
    ``nodes_done`` of ``nodes_total`` nodes) so a real-tensor fallback can be estimated.
    """

    def __init__(self, message: str, *, node: str = "", op: str = "", cause: str = "", too_small: bool = False,
                 bytes_done: int = 0, nodes_done: int = 0, nodes_total: int = 0) -> None:
        super().__init__(message)
        self.node, self.op, self.cause, self.too_small = node, op, cause, too_small
        self.bytes_done, self.nodes_done, self.nodes_total = bytes_done, nodes_done, nodes_total


# torch's wording when an input is too small for a kernel, a pooling window or an output size
TOO_SMALL = re.compile(r"too small|can't be greater than actual input|negative dimension|non-zero size|"
                        r"non-empty|greater than 0|should be positive|must be positive", re.IGNORECASE)


@dataclass
class NodeState:
    """What the pass learns about one node."""

    value: Any  # meta tensor, tuple of them, or a plain Python value (sizes)
    geo: Geo
    rule: str | None = None
    notes: list[str] = field(default_factory=list)


def _is_tensors(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(_is_tensors(v) for v in value)


def _geo_of_value(value: Any, geo: TensorGeom) -> Geo:
    """Broadcast one geometry over a (possibly nested) tensor output."""
    if isinstance(value, torch.Tensor):
        if geo.whole:  # a reshape or reduction of what reads the whole input everywhere still does
            return geo if geo.rank == value.dim() else TensorGeom.everywhere(value.dim())
        return geo if geo.rank == value.dim() and not has_factors(geo) else geo.globalised(value.dim())
    if isinstance(value, (tuple, list)):
        return tuple(_geo_of_value(v, geo) for v in value)
    return None


def _tracked(tensors: list[TensorGeom]) -> bool:
    """Whether global inputs still place axes in dims (factors, or axes every unit reads whole after attention):
    then the op's rule must say where they go, rather than the dims being copied."""
    return any(has_factors(g) or any(isinstance(t, Track) and t.whole for t in g.dims) for g in tensors)


def _unpacked(geo: Any, lost: set[int]) -> Any:
    """``geo`` without its dims that carry factors of axes: those axes are global (their axes go to ``lost``)."""
    if not has_factors(geo):
        return geo
    lost.update(a for a, _ in geo.packed)
    return replace(geo, dims=tuple(None if isinstance(t, Packed) else t for t in geo.dims), packed=())


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _flat_geos(geo: Any) -> list:
    if isinstance(geo, (tuple, list)):
        return [g for item in geo for g in _flat_geos(item)]
    if isinstance(geo, dict):
        return [g for item in geo.values() for g in _flat_geos(item)]
    return [geo]


class _Pass:
    def __init__(self, root: nn.Module, graph: fx.Graph, names: dict[fx.Node, str], real: bool) -> None:
        self.root = root
        self.graph = graph
        self.names = names
        self.real = real
        self.modules = dict(root.named_modules())
        self.states: dict[fx.Node, NodeState] = {}

    # -- shapes -------------------------------------------------------------
    def _execute(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        module = self.modules[node.target] if node.op == "call_module" else None
        return run_op(node.op, node.target, module, args, kwargs, self.real)

    # -- geometry -----------------------------------------------------------
    def _geometry(self, node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict, out: Any) -> NodeState:
        geo_args = fx.node.map_arg(node.args, lambda n: self.states[n].geo)
        geo_kwargs = fx.node.map_arg(node.kwargs, lambda n: self.states[n].geo)
        rule = lookup(node.op, node.target, module)
        # a (tensor, size) pair counts as tensors only for ops whose rule says what they return
        if not (_is_tensors(out) or rule is not None and rule.mixed and isinstance(out, tuple)):
            return NodeState(out, None)
        inputs = [g for g in _flat_geos((geo_args, geo_kwargs)) if g is not None]
        for g in inputs:
            if isinstance(g, (Unknown, Misaligned)):
                return NodeState(out, g)
        tensors = [g for g in inputs if isinstance(g, TensorGeom)]
        if tensors and all(g.const for g in tensors):
            return NodeState(out, _geo_of_value(out, tensors[0]), rule and rule.name)
        factors = any(has_factors(g) for g in tensors)
        if tensors and all(g.const or g.is_global for g in tensors) and not (rule is not None and _tracked(tensors)):
            # whatever the op, an output computed from inputs that each depend on the
            # whole image depends on the whole image
            glob = next(g for g in tensors if not g.const)
            return NodeState(out, _geo_of_value(out, glob), rule and rule.name)
        if not tensors:
            # a factory (torch.arange, zeros) or a literal: independent of the input
            return NodeState(out, _geo_of_value(out, TensorGeom.constant(0)), rule and rule.name)
        name = self.names[node]
        if rule is None:
            what = type(module).__qualname__ if module is not None else _op_name(node)
            return NodeState(out, Unknown(f"no geometry rule for {what}", name))
        notes: list[str] = []
        if not rule.factors and factors:
            lost: set[int] = set()
            geo_args, geo_kwargs = fx.node.map_aggregate((geo_args, geo_kwargs), lambda g: _unpacked(g, lost))
            notes.append(bound_note(f"no rule for {rule.name or 'this op'} on factors", lost))
        call = Call(node, module, args, kwargs, geo_args, geo_kwargs, out, notes)
        try:
            geo = rule.fn(call)
        except RuleError as exc:
            geo = Unknown(f"{rule.name}: {exc}", name)
        if isinstance(geo, (Unknown, Misaligned)) and not geo.origin:
            geo = type(geo)(geo.reason, name)
        return NodeState(out, geo, rule.name, call.notes)

    def _failure(self, node: fx.Node, exc: Exception) -> ShapeError:
        cause = (str(exc).strip().splitlines() or [""])[0]
        done = [leaf for state in self.states.values() for leaf in _tensors(state.value)]
        return ShapeError(
            f"running node '{self.names[node]}' ({_op_name(node)}) for shapes failed: {type(exc).__name__}: {cause}",
            node=self.names[node], op=type(self.modules[node.target]).__name__ if node.op == "call_module"
            else _op_name(node), cause=cause, too_small=bool(TOO_SMALL.search(cause)),
            bytes_done=sum(t.numel() * t.element_size() for t in done), nodes_done=len(self.states),
            nodes_total=len(self.graph.nodes))

    # -- driver -------------------------------------------------------------
    def run(self, example: torch.Tensor) -> dict[fx.Node, NodeState]:
        spatial = example.dim() - 2
        placeholders = 0
        for node in self.graph.nodes:
            if node.op == "placeholder":
                if placeholders == 0:
                    self.states[node] = NodeState(example, TensorGeom.image(example.dim(), spatial))
                elif node.args:
                    self.states[node] = NodeState(node.args[0], None)
                else:
                    raise ShapeError(f"the model takes more than one required input ('{node.target}')")
                placeholders += 1
                continue
            if node.op == "output":
                self.states[node] = NodeState(None, None)
                continue
            if node.op == "get_attr":
                value = read_attr(self.root, node.target)
                value = value if self.real else to_meta(value)
                geo = TensorGeom.constant(value.dim()) if isinstance(value, torch.Tensor) else None
                self.states[node] = NodeState(value, geo)
                continue
            args = fx.node.map_arg(node.args, lambda n: self.states[n].value)
            kwargs = fx.node.map_arg(node.kwargs, lambda n: self.states[n].value)
            module = self.modules.get(node.target) if node.op == "call_module" else None
            rule = lookup(node.op, node.target, module)
            out = _known_output(rule, module, args, kwargs) if rule is not None else None
            if out is None:
                try:
                    out = self._execute(node, args, kwargs)
                except Exception as exc:
                    raise self._failure(node, exc) from exc
            self.states[node] = self._geometry(node, module, args, kwargs, out)
        return self.states


def _known_output(rule: Any, module: nn.Module | None, args: tuple, kwargs: dict) -> Any:
    """A stand-in output for ops whose rule knows their output shape, or ``None``: run the op."""
    if callable(rule.shape):
        return rule.shape(module, args, kwargs)
    first = args[0] if args else None
    if rule.shape is None or not isinstance(first, torch.Tensor):
        return None
    if rule.shape == "broadcast":
        # same shapes and one floating dtype: the output is the first input's (ints may promote, e.g. under /)
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        if not first.is_floating_point() or any(t.shape != first.shape or t.dtype != first.dtype for t in tensors):
            return None
    # a fresh contiguous stand-in: a later .view() must see what .contiguous() would give
    return first if first.is_contiguous() else torch.empty(first.shape, dtype=first.dtype, device=first.device)


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    return getattr(target, "__name__", str(target))


def propagate(traced: "Traced", input_shape: tuple[int, ...], real: bool = False) -> dict[fx.Node, NodeState]:
    """Shapes and geometry of every node for one input of ``input_shape`` (batch included).

    With ``real=True`` the graph runs on CPU zeros instead of the meta device, for
    models whose forward needs real values (it is slower and allocates memory).
    """
    device = "cpu" if real else "meta"
    example = torch.zeros(input_shape, device=device)
    # the model's own warnings (deprecations, size hints) are about running it, not about its geometry
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _Pass(traced.root, traced.graph, traced.names, real).run(example)
