"""``analyze(model)``: trace, propagate, and collect per-node geometry into a :class:`~.result.Plan`.

Tagging (:func:`rffsurgery.tags.tag`) and freeze plans
(:func:`rffsurgery.plan.build_freeze_plan`) are functions over the result; this module
imports neither, so the dependency runs one way: tags → analysis, plan → analysis.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import torch
from torch import fx, nn

from ..errors import InvalidArgument, RffError, brief
from ..geometry.propagate import NodeState, ShapeError, propagate
from ..geometry.tensor import Misaligned, Packed, TensorGeom, Unknown
from ..models.given import module_of
from ..models.zoo import parse_size, resolve
from ..trace.capture import capture
from ..trace.meta import read_attr
from ..trace.torch_export import NeedsRealWeights
from ..usercode import FORWARD_FIX, user_code
from .fallback import check_fallback, check_weights, explained
from .result import DimLayout, LayerRF, Plan

__all__ = ["UnknownOpError", "analyze", "declared_input_size", "parse_input_size"]


class UnknownOpError(RffError, RuntimeError):
    """Raised in strict mode when some op has no geometry rule."""


def parse_input_size(value: Any, default: tuple[int, ...] = (3, 224, 224)) -> tuple[int, ...]:
    """``224``, ``"224x192"``, ``"1,16000"``, ``"3,16,112,112"`` or a tuple → ``(C, *spatial)``; see :func:`zoo.parse_size`."""
    return parse_size(value, default)


def _op_label(node: fx.Node, module: nn.Module | None) -> str:
    if "rff_op" in node.meta:  # the front end's own name for it (the ONNX op type)
        return node.meta["rff_op"]
    if module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def _layer(node: fx.Node, name: str, state: NodeState, module: nn.Module | None, names: dict[fx.Node, str],
           n_axes: int, aliases: tuple[str, ...], root: nn.Module) -> LayerRF:
    value, geo = state.value, state.geo
    shape = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None
    params = _params(node, module, root, value)
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
    return LayerRF(**_geometry(geo, value, n_axes), **common)


def _geometry(geo: TensorGeom, value: Any, n_axes: int) -> dict[str, Any]:
    """Per axis its summary, grid and dim, and per dim of the output where each axis's units lie."""
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    if not geo.packed:  # every axis whole in one dim, or global (most nodes): LayerRF.layout derives from dims
        dims = tuple(next((d for d, t in enumerate(geo.dims) if t is not None and t.axis == a and t.map is not None),
                          None) for a in range(n_axes))
        axes = tuple(geo.dims[d].map.summary() if d is not None else None for d in dims)
        status = "global" if all(a is None for a in axes) else "ok"
        grid = tuple(shape[d] if d is not None and d < len(shape) else None for d in dims)
        return dict(axes=axes, status=status, global_context=geo.global_ctx and status == "ok", grid=grid,
                    dims=dims)
    maps: dict[int, Any] = dict(geo.packed)
    layout: list[Any] = []
    dims: list[int | None] = [None] * n_axes
    sizes: dict[int, int] = {}
    for d, t in enumerate(geo.dims):
        if isinstance(t, Packed):  # digits of an axis that is global here are plain: they spell no unit
            digits = tuple((x.axis if maps.get(x.axis) is not None else None, x.place, x.size) for x in t.digits)
            layout.append(DimLayout(t.lead, t.trail, digits))
            for axis, _, size in digits:
                if axis is not None:
                    sizes[axis] = sizes.get(axis, 1) * size
        elif t is not None and t.map is not None and t.axis < n_axes and d < len(shape):
            layout.append(DimLayout(0, 0, ((t.axis, 1, shape[d]),)))
            maps[t.axis], dims[t.axis], sizes[t.axis] = t.map, d, int(shape[d])
        else:
            layout.append(None)
    axes = tuple(maps[a].summary() if maps.get(a) is not None else None for a in range(n_axes))
    status = "global" if all(a is None for a in axes) else "ok"
    grid = tuple(sizes.get(a) if axes[a] is not None and shape else None for a in range(n_axes))
    return dict(axes=axes, status=status, global_context=geo.global_ctx and status == "ok", grid=grid,
                dims=tuple(dims), packing=tuple(layout) if status == "ok" else ())


def _params(node: fx.Node, module: nn.Module | None, root: nn.Module, value: Any) -> tuple[str, ...]:
    """The parameters a node reads itself: its module's own, or the parameters fed to it by ``get_attr`` nodes.

    The second form is how functional graphs hold weights (``F.conv2d(x, self.weight)``,
    ONNX initializers, torch.export's aten graphs), so their weight layers have parameters too.
    """
    if module is not None:
        return tuple(f"{node.target}.{p}" for p, _ in module.named_parameters(recurse=False))
    if node.op == "get_attr":
        return (str(node.target),) if isinstance(value, torch.Tensor) else ()
    return tuple(str(a.target) for a in node.all_input_nodes
                 if a.op == "get_attr" and isinstance(read_attr(root, str(a.target)), nn.Parameter))


def analyze(
    model: nn.Module | str,
    input_size: Any = None,
    *,
    strict: bool = False,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Iterable[Callable] = (),
    name: str | None = None,
    num_classes: int | None = None,
    capture: str = "auto",
    example: torch.Tensor | None = None,
) -> Plan:
    """Receptive field, effective stride and padding of every node of ``model``.

    ``model`` is a module, a name the zoo resolves (``"resnet50"``,
    ``"timm:convnext_tiny"``, ``"pkg.module:factory"``) or an ONNX file
    (``"model.onnx"``); names are built on the meta device, without weights, with a
    ``num_classes`` head if given.  ``input_size`` is ``(C, H, W)`` (or an int side); by
    default the model's own default size (an ONNX file's input), else 3×224×224.  With
    ``strict`` an op without a geometry rule raises :class:`UnknownOpError` instead of
    being reported.  ``capture`` is ``"auto"`` (torch.fx, and torch.export when fx cannot
    trace the model), ``"fx"`` or ``"export"`` (:mod:`rffsurgery.trace.capture`); a graph
    captured by torch.export holds for the branches its ``example`` input takes
    (default: seeded standard normal values).
    """
    leaf_modules = _leaf_classes(leaf_modules)
    model = module_of(model)  # what rewrite() returns stands for its rewritten model
    how = (capture, example)
    if isinstance(model, str):
        spec = resolve(model)
        if spec.source == "onnx":  # its graph, with meta initializers: nothing to build on CPU instead
            size = parse_input_size(input_size, spec.input_size)
            return _analyze_module(spec.build("meta", num_classes), spec.name, size, strict, leaf_modules,
                                   autowrap_functions, how)
        return _analyze_built(functools.partial(spec.build, num_classes=num_classes), spec.name, input_size,
                              spec.input_size, strict, leaf_modules, autowrap_functions, how)
    if num_classes is not None:
        raise InvalidArgument("num_classes applies to models given by name; a module already has its head")
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise InvalidArgument(f"analyze() got the class {model.__name__}, not a model: pass an instance, "
                              f"e.g. analyze({model.__name__}(...))")
    if not isinstance(model, nn.Module):
        raise InvalidArgument(f"analyze() takes an nn.Module or a model name such as 'resnet50', "
                              f"got {type(model).__name__} {brief(model)}")
    size = parse_input_size(input_size, declared_input_size(model) or (3, 224, 224))
    return _analyze_module(model, name or type(model).__name__, size, strict, leaf_modules, autowrap_functions, how)


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
                   strict: bool, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable],
                   how: tuple[str, torch.Tensor | None]) -> Plan:
    """A zoo model: on the meta device first, on CPU if its construction, forward or capture needs real values.

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
            return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions, how)
        except ShapeError as exc:
            if exc.too_small:
                raise
            check_fallback(name, size, model, exc)
        except NeedsRealWeights as exc:
            check_weights(name, model, str(exc))
    model = build("cpu")
    size = parse_input_size(input_size, declared_input_size(model) or spec_size)
    return _analyze_module(model, name, size, strict, leaf_modules, autowrap_functions, how)


def _analyze_module(model: nn.Module, name: str, size: tuple[int, ...], strict: bool,
                    leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable],
                    how: tuple[str, torch.Tensor | None] = ("auto", None)) -> Plan:
    traced = capture(model, leaf_modules, autowrap_functions, (1, *size), *how)
    root = traced.root
    on_meta = any(p.device.type == "meta" for p in root.parameters())
    try:
        with user_code(f"the forward of {name}", FORWARD_FIX, exits_only=True):
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
                               tuple(sorted(aliases.get(name_, ()), key=len)), root)
    plan = Plan(name, size, layers, traced, model)
    if strict:
        missing = plan.unknown
        if missing:
            shown = "; ".join(f"{l.name} ({l.op}): {l.reason}" for l in missing[:5])
            more = f"; … and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UnknownOpError(f"{name}: {len(missing)} node(s) without an exact geometry: {shown}{more} "
                                 "(drop --strict to report them as unknown, or add rules)")
    return plan
