"""``analyze(model)``: trace, propagate, and collect per-node geometry into a :class:`Plan`.

A :class:`Plan` is the analysis of one model at one input size.  It is indexable
by node name (``plan["layer4"]``), iterable in execution order, and is the
object that tagging and freeze-plan export build on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import fx, nn

from .geometry.algebra import AxisRF
from .geometry.propagate import NodeState, ShapeError, propagate
from .geometry.tensor import Misaligned, TensorGeom, Unknown
from .trace import Traced, trace
from .errors import RffError

if TYPE_CHECKING:
    from .plan import FreezePlan, Schedule
    from .tags import Tag

__all__ = ["LayerRF", "Plan", "UnknownOpError", "analyze", "parse_input_size"]

GLOBAL = "global"
_GEOMETRY_RULES = {"conv", "conv_transpose", "pool", "adaptive_pool", "interpolate", "pad", "pixel_shuffle",
                   "pixel_unshuffle", "linear", "attention"}


class UnknownOpError(RffError, RuntimeError):
    """Raised in strict mode when some op has no geometry rule."""


@dataclass(frozen=True)
class LayerRF:
    """One node of the analysed graph.

    ``axes`` has one entry per spatial axis of the input (H, W for images): an
    :class:`AxisRF` with size/stride/padding, or ``None`` when the node depends on
    the whole extent of that axis.  ``status`` is ``"ok"``, ``"global"`` (every
    axis global), ``"unknown"`` (an op upstream has no rule — see ``reason``),
    ``"misaligned"`` or ``"none"`` (not a tensor: sizes, shapes).
    """

    name: str
    op: str
    kind: str
    target: str
    shape: tuple[int, ...] | None
    axes: tuple[AxisRF | None, ...]
    status: str
    global_context: bool = False
    reason: str = ""
    notes: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    rule: str | None = None
    inputs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # modules whose output this node is (``layer4`` for ``layer4.2.relu_2``)

    @property
    def rf(self) -> tuple[int | str, ...]:
        """Receptive field size per axis (``"global"`` where it spans the whole axis)."""
        return tuple(a.size if a is not None else GLOBAL for a in self.axes)

    @property
    def stride(self) -> tuple[Fraction | None, ...]:
        return tuple(a.stride if a is not None else None for a in self.axes)

    @property
    def padding(self) -> tuple[Fraction | None, ...]:
        return tuple(a.padding if a is not None else None for a in self.axes)

    @property
    def is_local(self) -> bool:
        return self.status == "ok" and any(a is not None for a in self.axes)

    def interval(self, index: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Unclipped input interval per axis for the unit at spatial ``index`` (e.g. ``(i, j)``)."""
        if self.status != "ok" or any(a is None for a in self.axes):
            raise ValueError(f"node '{self.name}' has no local receptive field on every axis ({self.status})")
        return tuple(a.interval(u) for a, u in zip(self.axes, index))

    def to_dict(self) -> dict[str, Any]:
        def num(x: Fraction | None) -> int | str | None:
            if x is None:
                return None
            return int(x) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"

        return {
            "name": self.name,
            "op": self.op,
            "kind": self.kind,
            "shape": list(self.shape) if self.shape is not None else None,
            "status": self.status,
            "rf": list(self.rf) if self.status in ("ok", "global") else None,
            "stride": [num(s) for s in self.stride] if self.status == "ok" else None,
            "padding": [num(p) for p in self.padding] if self.status == "ok" else None,
            "global_context": self.global_context,
            "reason": self.reason or None,
            "notes": list(self.notes),
            "params": list(self.params),
        }


@dataclass
class Plan:
    """The receptive-field analysis of one model at one input size."""

    model_name: str
    input_size: tuple[int, ...]
    layers: dict[str, LayerRF]
    traced: Traced = field(repr=False)
    model: nn.Module = field(repr=False)
    _tag_cache: dict[str, list["Tag"]] = field(default_factory=dict, repr=False)

    # -- container protocol ---------------------------------------------------
    def __getitem__(self, name: str) -> LayerRF:
        """A node by name, or a module by path (``plan["layer4"]`` is the node holding layer4's output)."""
        found = self.layers.get(name) or self.layers.get(self.traced.module_outputs.get(name, ""))
        if found is None:
            import difflib

            close = difflib.get_close_matches(name, [*self.layers, *self.traced.module_outputs], n=5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"no node or module '{name}' in {self.model_name}{hint}")
        return found

    def __contains__(self, name: object) -> bool:
        return name in self.layers or name in self.traced.module_outputs

    def __iter__(self) -> Iterator[LayerRF]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    # -- views ----------------------------------------------------------------
    @property
    def n_axes(self) -> int:
        return len(self.input_size) - 1

    @property
    def unknown(self) -> list[LayerRF]:
        """Nodes where a rule is missing (the origins, not everything downstream of them)."""
        return [l for l in self if l.status in ("unknown", "misaligned") and not l.reason.startswith("after ")]

    @property
    def complete(self) -> bool:
        return not any(l.status in ("unknown", "misaligned") for l in self)

    def main_layers(self) -> list[LayerRF]:
        """Layers that change the geometry or carry weights: what a reader wants to see."""
        return [l for l in self if _is_main(l)]

    def output(self) -> LayerRF:
        """The last tensor-producing node before the graph output."""
        tensors = [l for l in self if l.status != "none" and l.kind != "output"]
        return tensors[-1]

    # -- tags and freeze plans -------------------------------------------------
    def tags(self, policy: str = "paper", **options: Any) -> list["Tag"]:
        """RF-expanding nodes under ``policy`` (``paper``, ``growth``, ``names``; see :mod:`rffsurgery.tags`).

        Memoised per policy and options: the CLI's table, plot and exported plan share one tagging.
        """
        from .tags import tag

        key = json.dumps([policy, options], sort_keys=True, default=repr)
        if key not in self._tag_cache:
            self._tag_cache[key] = tag(self, policy, **options)
        return list(self._tag_cache[key])

    def freeze_plan(self, policy: str = "paper", schedule: "Schedule | None" = None, bn: str = "train",
                    **options: Any) -> "FreezePlan":
        """A :class:`~rffsurgery.plan.FreezePlan` freezing the layers ``policy`` tags."""
        from .plan import build_plan

        return build_plan(self, policy, schedule, bn, **options)

    def export(self, path: str, policy: str = "paper", schedule: "Schedule | None" = None, bn: str = "train",
               **options: Any) -> "FreezePlan":
        """Build the freeze plan and write it as JSON to ``path``; returns it."""
        plan = self.freeze_plan(policy, schedule, bn, **options)
        plan.export(path)
        return plan

    def to_dict(self, every_node: bool = True) -> dict[str, Any]:
        layers = self.layers.values() if every_node else self.main_layers()
        return {
            "schema": "rffsurgery.analysis/1",
            "model": self.model_name,
            "input_size": list(self.input_size),
            "complete": self.complete,
            "nodes": [l.to_dict() for l in layers],
        }


def _is_main(layer: LayerRF) -> bool:
    if layer.kind in ("placeholder", "output", "get_attr") or layer.status == "none":
        return False
    stage_end = any("." not in a for a in layer.aliases)  # output of a top-level child (layer1, features)
    return stage_end or layer.rule in _GEOMETRY_RULES or layer.status in ("unknown", "misaligned") and not layer.reason.startswith("after ")


def parse_input_size(value: Any, default: tuple[int, ...] = (3, 224, 224)) -> tuple[int, ...]:
    """``224``, ``"224x192"``, ``"1,16000"``, ``"3,16,112,112"`` or a tuple → ``(C, *spatial)``; see :func:`zoo.parse_size`."""
    from .zoo import parse_size

    return parse_size(value, default)


def _op_label(node: fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def _layer(node: fx.Node, name: str, state: NodeState, module: nn.Module | None, names: dict[fx.Node, str],
           n_axes: int, aliases: tuple[str, ...]) -> LayerRF:
    value, geo = state.value, state.geo
    shape = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None
    params = tuple(f"{node.target}.{p}" for p, _ in module.named_parameters(recurse=False)) if module is not None else ()
    if node.op == "get_attr" and isinstance(value, torch.Tensor):
        params = (str(node.target),)
    common = dict(name=name, op=_op_label(node, module), kind=node.op, target=str(node.target), shape=shape,
                  params=params, rule=state.rule, notes=tuple(state.notes),
                  inputs=tuple(names[n] for n in node.all_input_nodes), aliases=aliases)
    if isinstance(geo, (Unknown, Misaligned)):
        status = "unknown" if isinstance(geo, Unknown) else "misaligned"
        reason = geo.reason if geo.origin == name else f"after {geo.origin}: {geo.reason}"
        return LayerRF(axes=(None,) * n_axes, status=status, reason=reason, **common)
    if isinstance(geo, tuple):  # multi-output op: report the first tensor
        geo = next((g for g in geo if isinstance(g, TensorGeom)), None)
    if not isinstance(geo, TensorGeom) or geo.const:
        return LayerRF(axes=(None,) * n_axes, status="none", **common)
    axes = []
    for a in range(n_axes):
        track = geo.track_of(a)
        axes.append(track.map.summary() if track is not None and track.map is not None else None)
    status = "global" if all(a is None for a in axes) else "ok"
    return LayerRF(axes=tuple(axes), status=status, global_context=geo.global_ctx and status == "ok", **common)


def analyze(
    model: nn.Module | str,
    input_size: Any = None,
    *,
    strict: bool = False,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Iterable[Callable] = (),
    name: str | None = None,
) -> Plan:
    """Receptive field, effective stride and padding of every node of ``model``.

    ``model`` is a module or a name the zoo resolves (``"resnet50"``,
    ``"timm:convnext_tiny"``, ``"pkg.module:factory"``); names are built on the meta
    device, without weights.  ``input_size`` is ``(C, H, W)`` (or an int side);
    by default the model's own default size, else 3×224×224.  With ``strict`` an op
    without a geometry rule raises :class:`UnknownOpError` instead of being reported.
    """
    if isinstance(model, str):
        from .zoo import resolve

        spec = resolve(model)
        return _analyze_built(spec.build, spec.name, input_size, spec.input_size, strict, leaf_modules,
                              autowrap_functions)
    size = parse_input_size(input_size, declared_input_size(model) or (3, 224, 224))
    return _analyze_module(model, name or type(model).__name__, size, strict, leaf_modules, autowrap_functions)


def declared_input_size(model: nn.Module) -> tuple[int, ...] | None:
    """The input size a model declares itself: ``default_input_size``, or torchvision's ``image_size``.

    The model's own attribute beats its pretrained weights' crop size: torchvision's
    vit_h_14 is built for 224 px without weights, though its default weights use 518.
    """
    declared = getattr(model, "default_input_size", None)
    if declared is not None:
        return tuple(declared)
    side = getattr(model, "image_size", None)
    return (3, side, side) if isinstance(side, int) else None


def _analyze_built(build: Callable[[str], nn.Module], name: str, input_size: Any, spec_size: tuple[int, ...],
                   strict: bool, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> Plan:
    """A zoo model: on the meta device first, on CPU if its construction or forward needs real values."""
    try:
        model = build("meta")
    except Exception:  # e.g. ``.tolist()`` on a meta tensor in __init__
        model = None
    if model is not None:
        size = parse_input_size(input_size, declared_input_size(model) or spec_size)
        try:
            return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions)
        except ShapeError:
            pass
    model = build("cpu")
    size = parse_input_size(input_size, declared_input_size(model) or spec_size)
    return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions)


def _analyze_module(model: nn.Module, name: str, size: tuple[int, ...], strict: bool,
                    leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> Plan:
    traced = trace(model, leaf_modules, autowrap_functions)
    root = traced.root
    on_meta = any(p.device.type == "meta" for p in root.parameters())
    try:
        states = propagate(traced, (1, *size))
    except ShapeError:
        if on_meta:
            raise
        states = propagate(traced, (1, *size), real=True)
    modules = dict(root.named_modules())
    n_axes = len(size) - 1
    aliases: dict[str, list[str]] = {}
    for path, node_name in traced.module_outputs.items():
        aliases.setdefault(node_name, []).append(path)
    layers = {}
    for node in traced.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        name_ = traced.names[node]
        layers[name_] = _layer(node, name_, states[node], module, traced.names, n_axes,
                               tuple(sorted(aliases.get(name_, ()), key=len)))
    plan = Plan(name, size, layers, traced, model)
    if strict:
        missing = plan.unknown
        if missing:
            lines = "\n".join(f"  {l.name} ({l.op}): {l.reason}" for l in missing)
            raise UnknownOpError(f"{name}: {len(missing)} node(s) without an exact geometry:\n{lines}")
    return plan
