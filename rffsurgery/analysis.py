"""``analyze(model)``: trace, propagate, and collect per-node geometry into a :class:`Plan`.

A :class:`Plan` is the analysis of one model at one input size: plain data,
indexable by node name (``plan["layer4"]``), iterable in execution order.
Tagging (:func:`rffsurgery.tags.tag`) and freeze plans
(:func:`rffsurgery.plan.build_freeze_plan`) are functions over it; this module
imports neither, so the dependency runs one way: tags → analysis, plan → analysis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import fx, nn

from .geometry.algebra import AxisRF
from .fallback import check_fallback, explained
from .geometry.propagate import NodeState, ShapeError, propagate
from .geometry.tensor import Misaligned, TensorGeom, Unknown
from .trace import Traced, trace
from .errors import InvalidArgument, RffError, brief

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
    def rf_min(self) -> tuple[int | str, ...]:
        """Smallest receptive field over the output positions per axis (below ``rf`` only after upsampling)."""
        return tuple(a.min_size if a is not None else GLOBAL for a in self.axes)

    @property
    def outer_extent(self) -> tuple[int | str, ...]:
        """Per axis, the width W with ``[floor(−P + u·S), ceil(−P + u·S) + W − 1]`` ⊇ every unit's interval."""
        return tuple(a.outer if a is not None else GLOBAL for a in self.axes)

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
        if len(index) != len(self.axes):
            raise InvalidArgument(f"interval() takes one index per spatial axis of '{self.name}': "
                                  f"{len(self.axes)} (e.g. {tuple(range(len(self.axes)))}), got {tuple(index)}")
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
            "rf_min": list(self.rf_min) if self.status in ("ok", "global") else None,
            "outer_extent": list(self.outer_extent) if self.status in ("ok", "global") else None,
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
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Results derived from this analysis, kept by whoever derives them (``tags.tag`` memoises per policy)."""

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

    @property
    def shape_specialised(self) -> bool:
        """Whether the model's code branched on shapes, so the graph (and this analysis) holds for this size only."""
        return self.traced.sized_for is not None

    def to_dict(self, every_node: bool = True) -> dict[str, Any]:
        layers = self.layers.values() if every_node else self.main_layers()
        return {
            "schema": "rffsurgery.analysis/1",
            "model": self.model_name,
            "input_size": list(self.input_size),
            "complete": self.complete,
            "shape_specialised": self.shape_specialised,
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
    num_classes: int | None = None,
) -> Plan:
    """Receptive field, effective stride and padding of every node of ``model``.

    ``model`` is a module or a name the zoo resolves (``"resnet50"``,
    ``"timm:convnext_tiny"``, ``"pkg.module:factory"``); names are built on the meta
    device, without weights, with a ``num_classes`` head if given.  ``input_size`` is
    ``(C, H, W)`` (or an int side); by default the model's own default size, else
    3×224×224.  With ``strict`` an op without a geometry rule raises
    :class:`UnknownOpError` instead of being reported.
    """
    leaf_modules = _leaf_classes(leaf_modules)
    if isinstance(model, str):
        from .zoo import resolve

        spec = resolve(model)
        return _analyze_built(functools.partial(spec.build, num_classes=num_classes), spec.name, input_size,
                              spec.input_size, strict, leaf_modules, autowrap_functions)
    if num_classes is not None:
        raise InvalidArgument("num_classes applies to models given by name; a module already has its head")
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise InvalidArgument(f"analyze() got the class {model.__name__}, not a model: pass an instance, "
                              f"e.g. analyze({model.__name__}(...))")
    if not isinstance(model, nn.Module):
        raise InvalidArgument(f"analyze() takes an nn.Module or a model name such as 'resnet50', "
                              f"got {type(model).__name__} {brief(model)}")
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



def _leaf_classes(leaf_modules: Iterable[Any]) -> tuple[type, ...]:
    single = isinstance(leaf_modules, type) or not isinstance(leaf_modules, Iterable)
    leaves = (leaf_modules,) if single else tuple(leaf_modules)
    for leaf in leaves:
        if not (isinstance(leaf, type) and issubclass(leaf, nn.Module)):
            what = f"the instance {brief(leaf)}" if isinstance(leaf, nn.Module) else brief(leaf)
            raise InvalidArgument(f"leaf modules must be nn.Module classes (such as torch.nn.LSTM), got {what}")
    return leaves


def _analyze_built(build: Callable[[str], nn.Module], name: str, input_size: Any, spec_size: tuple[int, ...],
                   strict: bool, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> Plan:
    """A zoo model: on the meta device first, on CPU if its construction or forward needs real values.

    The CPU fallback is refused when the meta run shows that it cannot help (the input
    is too small) or would need more memory than allowed (:mod:`rffsurgery.fallback`).
    """
    try:
        model = build("meta")
    except Exception:  # e.g. ``.tolist()`` on a meta tensor in __init__; a failing user factory fails again below
        model = None
    if model is not None:
        size = parse_input_size(input_size, declared_input_size(model) or spec_size)
        try:
            return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions)
        except ShapeError as exc:
            if exc.too_small:
                raise
            check_fallback(name, size, model, exc)
    model = build("cpu")
    size = parse_input_size(input_size, declared_input_size(model) or spec_size)
    return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions)


def _analyze_module(model: nn.Module, name: str, size: tuple[int, ...], strict: bool,
                    leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> Plan:
    traced = trace(model, leaf_modules, autowrap_functions, input_shape=(1, *size))
    root = traced.root
    on_meta = any(p.device.type == "meta" for p in root.parameters())
    try:
        try:
            states = propagate(traced, (1, *size))
        except ShapeError as exc:
            if on_meta or exc.too_small:
                raise
            check_fallback(name, size, root, exc)
            states = propagate(traced, (1, *size), real=True)
    except ShapeError as exc:
        raise explained(exc, traced, name, size, declared_input_size(traced.root)) from exc
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
            shown = "; ".join(f"{l.name} ({l.op}): {l.reason}" for l in missing[:5])
            more = f"; … and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UnknownOpError(f"{name}: {len(missing)} node(s) without an exact geometry: {shown}{more} "
                                 "(drop --strict to report them as unknown, or add rules)")
    return plan
