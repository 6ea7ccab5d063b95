"""The result of an analysis: one :class:`LayerRF` per graph node, gathered in a :class:`Plan`.

Plain data, indexable by node name (``plan["layer4"]``), iterable in execution order;
tagging (:mod:`rffsurgery.tags`), freeze plans (:mod:`rffsurgery.plan`) and every
report are functions over it.  :func:`find_layer`, :func:`check_unit` and
:func:`describe_unit` answer "which input pixels does this unit read?" in the user's
terms (a bad name or position is a one-line error).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidArgument, RffError, brief
from ..formats import stamp
from ..geometry.algebra import AxisRF
from ..geometry.factors import BOUND
from ..trace.tracer import Traced

__all__ = ["GLOBAL", "DimLayout", "LayerRF", "Plan", "WINDOW_RULES", "check_unit", "describe_unit", "find_layer",
           "geometry_differences", "require_plan", "select_unit"]

GLOBAL = "global"
_GEOMETRY_RULES = {"conv", "conv_transpose", "pool", "adaptive_pool", "interpolate", "pad", "pixel_shuffle",
                   "pixel_unshuffle", "linear", "attention"}


@dataclass(frozen=True)
class DimLayout:
    """Which units of which axes one dim of a node's output holds (mixed radix).

    The dim's index is ``lead`` + the row-major combination of its ``digits``
    (most significant first) + up to ``trail`` extra elements; a digit
    ``(axis, place, size)`` takes the value ``(u // place) % size`` for unit ``u`` of
    that axis, and a digit with ``axis None`` (channels, batch, heads) is summed
    over, like channels.  A plain NCHW row dim is ``DimLayout(0, 0, ((0, 1, H),))``;
    the tokens of a 7×7 window are ``((0, 1, 7), (1, 1, 7))``.
    """

    lead: int
    trail: int
    digits: tuple[tuple[int | None, int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"lead": self.lead, "trail": self.trail, "digits": [list(d) for d in self.digits]}


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
    grid: tuple[int | None, ...] = ()  # per spatial axis: how many output positions (units) the node has along it
    dims: tuple[int | None, ...] = ()  # per spatial axis: the output tensor dim (batch = 0) that carries it whole
    packing: tuple[DimLayout | None, ...] = ()  # ``layout`` of a node whose axes are not each whole in one dim

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

    @property
    def layout(self) -> tuple[DimLayout | None, ...]:
        """Per dim of the output tensor (batch = 0): the units of which axes it holds (see :func:`select_unit`).

        Stored for nodes with windows, tokens or sub-pixel channels (``packing``);
        for every other node it follows from ``dims`` and ``grid``.
        """
        if self.packing or self.status != "ok" or self.shape is None:
            return self.packing
        layout: list[DimLayout | None] = [None] * (len(self.shape) + 1)
        for a, (d, n) in enumerate(zip(self.dims, self.grid)):
            if d is not None:
                layout[d] = DimLayout(0, 0, ((a, 1, n),))
        return tuple(layout)

    @property
    def is_map(self) -> bool:
        """A local feature map with each axis whole in a dim of its own (not tokens, windows or flattened)."""
        return self.is_local and all(d is not None for a, d in zip(self.axes, self.dims) if a is not None)

    @property
    def windowed(self) -> tuple[int | None, ...]:
        """Per axis, the window (in units) when units read whole windows: a period at an integer stride.

        After window attention, a mean over a window's tokens or a grid partition
        the map repeats every w units and the units of one period read overlapping
        spans; after upsampling the period comes with a fractional stride instead.
        """
        return tuple(a.map.period if a is not None and a.map.period > 1 and a.stride.denominator == 1 else None
                     for a in self.axes)

    @property
    def bounded(self) -> bool:
        """Whether some axis is reported global here because factors of it could not be followed (an outer bound)."""
        return any(BOUND in n for n in self.notes)

    def interval(self, index: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Unclipped input interval per axis for the unit at spatial ``index`` (e.g. ``(i, j)``)."""
        index = _position(index)
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
            "grid": list(self.grid) if self.status == "ok" else None,
            "maps": [_map(a) for a in self.axes] if self.status == "ok" else None,
            "windowed": list(self.windowed) if self.status == "ok" else None,
            "layout": [d.to_dict() if d is not None else None for d in self.layout] if self.status == "ok" else None,
        }


def _map(axis: AxisRF | None) -> dict[str, Any] | None:
    """The exact unit → interval map of one axis: unit ``u = q·period + j`` reads ``lo[j] + q·step … hi[j] + q·step``."""
    if axis is None:
        return None
    m = axis.map
    return {"period": m.period, "step": m.step, "lo": list(m.lo), "hi": list(m.hi)}


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
        if not isinstance(name, str):
            raise KeyError(f"a node is named by a string (e.g. plan['layer4']), got {type(name).__name__} {brief(name)}")
        found = self.layers.get(name) or self.layers.get(self.traced.module_outputs.get(name, ""))
        if found is None:
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

    def local_layers(self) -> list[LayerRF]:
        """Nodes after the input whose output keeps a spatial axis: none in an MLP, where every layer mixes
        the whole input.  The input itself, and what only rearranges it (an MLP's flatten: each element is
        one input pixel), have RF 1 and stride 1, which says nothing about the model."""
        return [l for l in self if l.is_local and l.kind != "placeholder"
                and any(a is not None and (a.size > 1 or a.stride != 1) for a in l.axes)]

    def output(self) -> LayerRF:
        """The last tensor-producing node before the graph output."""
        tensors = [l for l in self if l.status != "none" and l.kind != "output"]
        return tensors[-1]

    @property
    def shape_specialised(self) -> bool:
        """Whether the graph (and this analysis) holds for this input size only: the model's code branched on
        shapes, torch.export captured it, or an ONNX file's dynamic dims were set to this size."""
        return self.traced.sized_for is not None

    @property
    def capture(self) -> str:
        """How the graph was captured: ``"fx"``, ``"export"`` (for the branches its example input took) or ``"onnx"``."""
        return self.traced.capture

    def to_dict(self, every_node: bool = True) -> dict[str, Any]:
        layers = self.layers.values() if every_node else self.main_layers()
        return {
            **stamp("analysis", 1),
            "model": self.model_name,
            "input_size": list(self.input_size),
            "complete": self.complete,
            "shape_specialised": self.shape_specialised,
            "capture": self.capture,
            "nodes": [l.to_dict() for l in layers],
        }


def _is_main(layer: LayerRF) -> bool:
    if layer.kind in ("placeholder", "output", "get_attr") or layer.status == "none":
        return False
    stage_end = any("." not in a for a in layer.aliases)  # output of a top-level child (layer1, features)
    return stage_end or layer.rule in _GEOMETRY_RULES or layer.status in ("unknown", "misaligned") and not layer.reason.startswith("after ")


WINDOW_RULES = frozenset({"conv", "conv_transpose", "pool", "adaptive_pool", "interpolate"})


def _geometry(layer: LayerRF) -> tuple:
    local = layer.status in ("ok", "global")
    return (layer.status, layer.rf if local else None, layer.stride if local else None,
            layer.padding if local else None, layer.global_context)


def geometry_differences(reference: Plan, other: Plan, rules: frozenset[str] = WINDOW_RULES) -> tuple[int, list[str]]:
    """Compare two analyses of one network (a PyTorch model and its ONNX export, two captures).

    Every node of ``reference`` whose rule is in ``rules`` (convolutions, pooling, resampling)
    must be in ``other`` under its name — a node, or a module path where ``other`` has that
    module's insides (a block ``reference`` keeps whole) — with the same RF, stride, padding,
    status and global context.  Returns how many nodes were compared and a line per node that
    is missing or differs.
    """
    compared, differ = 0, []
    for layer in reference:
        if layer.rule not in rules:
            continue
        compared += 1
        found = other[layer.name] if layer.name in other else None
        if found is None or _geometry(found) != _geometry(layer):
            differ.append(f"{layer.name}: {_geometry(layer)} vs {None if found is None else _geometry(found)}")
    return compared, differ


def require_plan(value: Any, caller: str, error: type[RffError] = InvalidArgument) -> Plan:
    """``value`` if it is an analysis (:class:`Plan`); a model or a freeze plan in its place is a one-line error."""
    if isinstance(value, Plan):
        return value
    given = "a model" if isinstance(value, nn.Module) else f"{type(value).__name__} {brief(value)}"
    raise error(f"{caller} takes the analysis that analyze() returns, got {given}: "
                f"call {caller[:-2]}(analyze(model), …)")


def find_layer(plan: Plan, node: str) -> LayerRF:
    """``plan[node]``, with an unknown name as a user error that lists close matches."""
    try:
        return plan[node]
    except KeyError as exc:
        raise InvalidArgument(str(exc.args[0]) + "; see the names in 'rffsurgery analyze MODEL --all'") from None


def check_unit(layer: LayerRF, unit: Sequence[int]) -> tuple[int, ...]:
    """``unit`` as a tuple, if it is a position of ``layer``'s output with a local RF on every axis.

    A unit has one index per spatial axis of the input, each below the node's ``grid`` along
    that axis, whatever the node's layout (NCHW, NHWC, tokens).
    """
    unit = _position(unit)
    if layer.status != "ok" or any(a is None for a in layer.axes) or any(n is None for n in layer.grid):
        raise InvalidArgument(f"node {layer.name} has no local receptive field on every axis ({layer.status}); "
                              "choose a node before global pooling")
    grid = "x".join(map(str, layer.grid))
    if len(unit) != len(layer.grid) or any(not 0 <= u < n for u, n in zip(unit, layer.grid)):
        raise InvalidArgument(f"unit {','.join(map(str, unit))} is not a position of {layer.name}, whose output has "
                              f"{grid} positions: give {len(layer.grid)} indices, each below its size")
    return unit


def select_unit(value: torch.Tensor, layer: LayerRF, unit: Sequence[int]) -> torch.Tensor:
    """The elements of ``value`` (the node's output, batch first) that hold ``unit``: every channel and batch item.

    Wherever the node keeps its axes — NCHW, NHWC, windows folded into the batch,
    tokens, sub-pixel channels — ``layout`` says which digits of which dims spell
    each axis's unit; plain digits (channels, heads, batch) are kept whole, and so is
    a batch of several inputs folded in front of the windows.
    """
    for k, spec in enumerate(layer.layout):
        if spec is not None and (spec.lead or spec.trail):
            value = value.narrow(k, spec.lead, value.shape[k] - spec.lead - spec.trail)
    shape: list[int] = []
    index: list[Any] = []
    for k, n in enumerate(value.shape):
        spec = layer.layout[k] if k < len(layer.layout) else None
        if spec is None:
            shape.append(n)
            index.append(slice(None))
            continue
        held = math.prod(size for _, _, size in spec.digits)
        if n != held:  # a batch of several, folded in front of the windows (the analysis ran one)
            shape.append(n // held)
            index.append(slice(None))
        for axis, place, size in spec.digits:
            shape.append(size)
            index.append(slice(None) if axis is None else unit[axis] // place % size)
    return value.reshape(shape)[tuple(index)]


def _position(unit: Any) -> tuple[int, ...]:
    """An output position as a tuple of integers, one per spatial axis; anything else is :class:`InvalidArgument`."""
    try:
        position = tuple(unit)
    except TypeError:
        position = None
    if position is None or not all(isinstance(u, int) and not isinstance(u, bool) for u in position):
        raise InvalidArgument(f"a unit is a tuple of integers, one per spatial axis (e.g. (3, 4)), "
                              f"got {type(unit).__name__} {brief(unit)}")
    return position


def describe_unit(plan: Plan, node: str, unit: Sequence[int]) -> str:
    """One line: the exact (unclipped) input interval of one unit, per axis."""
    layer = find_layer(plan, node)
    unit = check_unit(layer, unit)
    names = ("rows", "cols") if plan.n_axes == 2 else tuple(f"axis {a}" for a in range(plan.n_axes))
    parts = [f"{name} {lo}…{hi} ({hi - lo + 1} px)" for name, (lo, hi) in zip(names, layer.interval(unit))]
    size = "x".join(map(str, plan.input_size))
    return (f"{plan.model_name} {layer.name} unit ({', '.join(map(str, unit))}): " + ", ".join(parts)
            + f" of the input {size} (unclipped; indices outside 0…size−1 are padding)")
