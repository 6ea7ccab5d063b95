"""Effective receptive fields (Luo, Li, Urtasun & Zemel, NeurIPS 2016; RepLKNet, Ding et al., CVPR 2022).

The theoretical receptive field says which input pixels *can* reach a unit; the
ERF says how much each one *does*: the absolute gradient of the unit (summed over
its channels) with respect to the input, summed over a set of inputs and
normalised.  For a stack of n linear k×k box filters it is the n-fold discrete
convolution of boxes, which tends to a Gaussian whose width grows like √n while
the theoretical RF grows like n (docs/erf.md).

Intermediate nodes come from the traced fx graph (:mod:`rffsurgery.trace`), so they
are named by module path exactly as ``analyze`` names them, and one forward pass
serves every requested node.  The contribution-area ratios follow RepLKNet: for
t = 20, 30, 50, 99 %, the smallest square centred on the unit's receptive field
that holds a fraction t of the total, as its side and its area over the input's.
(RepLKNet takes ``log10(x + 1)`` of the summed gradient first; we use the
gradient itself, so the fractions are fractions of the contribution.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import fx, nn

from ..data import sample_inputs
from ..errors import InvalidArgument, brief, names
from ..formats import stamp
from ..limits import NON_FINITE_WEIGHTS, check, require_finite
from ..models.given import require_module
from ..models.weights import load_weights
from ..models.zoo import resolve
from ..usercode import FORWARD_FIX, user_code
from .analyzer import analyze, declared_input_size, parse_input_size
from .fallback import MEMORY_ENV, FallbackTooLarge, fallback_limit
from .result import LayerRF, Plan, check_unit, find_layer, select_unit

__all__ = ["FRACTIONS", "ErfResult", "NodeErf", "default_node", "erf", "growth_nodes", "load_model"]

FRACTIONS = (0.2, 0.3, 0.5, 0.99)


@dataclass(frozen=True)
class NodeErf:
    """The ERF of one unit of one node: the normalised heat map and what the theory says."""

    node: str
    unit: tuple[int, ...]
    heatmap: torch.Tensor  # (H, W), float64, sums to 1: each pixel's share of the total contribution
    interval: tuple[tuple[int, int] | None, ...]  # the unit's theoretical RF per axis (None: global)
    rf: tuple[int | str, ...]
    squares: dict[float, int]  # fraction → side of the smallest centred square holding it

    @property
    def centre(self) -> tuple[int, ...]:
        """The input pixel the squares are centred on: the middle of the unit's RF (clipped to the input)."""
        return _centre(self.interval, self.heatmap.shape)

    def square(self, fraction: float) -> tuple[tuple[int, int], ...]:
        """The square holding ``fraction``: its first and last pixel per axis, unclipped (it can pass the border)."""
        r = self.squares[fraction] // 2
        return tuple((c - r, c + r) for c in self.centre)

    def area_ratio(self, fraction: float) -> float:
        """RepLKNet's ratio: the square's area (the part inside the input) over the input's."""
        shape = self.heatmap.shape
        inside = [min(hi, n - 1) - max(lo, 0) + 1 for (lo, hi), n in zip(self.square(fraction), shape)]
        return inside[0] * inside[1] / (shape[0] * shape[1])

    def outside_rf(self) -> float:
        """The share of the contribution outside the theoretical RF (zero, up to rounding, by construction)."""
        inside = self.heatmap[tuple(slice(max(iv[0], 0), iv[1] + 1) if iv is not None else slice(None)
                                    for iv in self.interval)].sum()
        return float(self.heatmap.sum() - inside)

    def summary(self) -> dict[str, Any]:
        """Everything but the heat map: the unit, its theoretical RF, the squares and their area ratios."""
        return {
            "node": self.node, "unit": list(self.unit), "rf": list(self.rf),
            "rf_interval": [list(iv) if iv is not None else None for iv in self.interval],
            "square_centre": list(self.centre),
            "squares": [{"fraction": f, "side": s, "area_ratio": round(self.area_ratio(f), 6)}
                        for f, s in self.squares.items()],
            "outside_rf": self.outside_rf(),
        }

    def to_dict(self, digits: int = 7) -> dict[str, Any]:
        peak = float(self.heatmap.max()) or 1.0
        return {
            **self.summary(),
            "heatmap_scale": "max = 1 (divide by heatmap_sum for each pixel's share of the contribution)",
            "heatmap_sum": round(float(self.heatmap.sum()) / peak, digits),
            "heatmap": [[round(v / peak, digits) for v in row] for row in self.heatmap.tolist()],
        }


@dataclass(frozen=True)
class ErfResult:
    """ERFs of several nodes of one model over one set of inputs."""

    model: str
    input_size: tuple[int, ...]
    weights: str
    data: str
    nodes: list[NodeErf] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # requested module path → node name

    def __getitem__(self, node: str) -> NodeErf:
        """A node's ERF by node name or by the module path it was requested as."""
        name = self.aliases.get(node, node)
        found = next((n for n in self.nodes if n.node == name), None)
        if found is None:
            raise KeyError(f"no ERF computed for {node!r}; computed: {', '.join(n.node for n in self.nodes)}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {**stamp("erf", 1), "model": self.model, "input_size": list(self.input_size),
                "weights": self.weights, "data": self.data, "fractions": list(FRACTIONS),
                "nodes": [n.to_dict() for n in self.nodes]}

    def table(self) -> str:
        """One line per node: theoretical RF and the squares holding 20/30/50/99 % of the contribution."""
        head = f"{'node':<28}{'unit':>10}{'RF':>9}" + "".join(f"{f'{f:.0%} side (area)':>20}" for f in FRACTIONS)
        lines = [f"{self.model}  input {'x'.join(map(str, self.input_size))}  weights: {self.weights}  "
                 f"data: {self.data}", head]
        for n in self.nodes:
            rf = "x".join(map(str, dict.fromkeys(n.rf)))
            cells = "".join(f"{f'{n.squares[f]} ({n.area_ratio(f):.3f})':>20}" for f in FRACTIONS)
            lines.append(f"{n.node:<28}{','.join(map(str, n.unit)):>10}{rf:>9}{cells}")
        return "\n".join(lines)


def _centre(interval: Sequence[tuple[int, int] | None], shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(max((iv[0] + iv[1]) // 2, 0), n - 1) if iv is not None else n // 2
                 for iv, n in zip(interval, shape))


class _Done(Exception):
    """Every requested node has been computed: the rest of the graph is not needed."""


class _Capture(fx.Interpreter):
    """Runs the traced graph and keeps the outputs of the requested nodes."""

    def __init__(self, gm: fx.GraphModule, wanted: Iterable[fx.Node]) -> None:
        super().__init__(gm)
        self.wanted = set(wanted)
        self.captured: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n in self.wanted:
            # a clone: a later in-place op (``out += identity``, ReLU(inplace)) must not change it
            self.captured[n] = out.clone()
            if len(self.captured) == len(self.wanted):
                raise _Done
        return out


def load_model(model: nn.Module | str, weights: str | Path | None = None, seed: int = 0) -> tuple[nn.Module, str, str]:
    """The model (a zoo name is built on CPU), its display name and where its weights come from."""
    if isinstance(model, str):
        spec = resolve(model)
        torch.manual_seed(seed)
        module, name = spec.build("cpu"), spec.name
        label = f"random init (seed {seed})"
    else:
        module = require_module(model, "erf()")
        name, label = type(module).__name__, "as given"
    if weights is not None:
        module, label = load_weights(module, weights), str(weights)
    return module, name, label


def _spatial_unit(layer: LayerRF, unit: Sequence[int] | None) -> tuple[int, ...]:
    """``unit``, checked; by default the centre of the node's output (``()`` when it has no spatial axes)."""
    if unit is not None or layer.status == "ok":  # a feature map: checked like a unit the user names
        return check_unit(layer, unit if unit is not None else tuple(n // 2 for n in layer.grid))
    return ()  # a vector (after global pooling): the whole of it


def _squares(heat: torch.Tensor, centre: Sequence[int]) -> dict[float, int]:
    """For each fraction, the side of the smallest square centred on ``centre`` holding it."""
    total = float(heat.sum())
    h, w = heat.shape
    cum = torch.zeros(h + 1, w + 1, dtype=torch.float64)
    cum[1:, 1:] = heat.cumsum(0).cumsum(1)
    ci, cj = centre
    held = []
    for r in range(max(h, w)):
        i0, i1, j0, j1 = max(ci - r, 0), min(ci + r + 1, h), max(cj - r, 0), min(cj + r + 1, w)
        held.append(float(cum[i1, j1] - cum[i0, j1] - cum[i1, j0] + cum[i0, j0]))
    out = {}
    for f in FRACTIONS:
        r = next((r for r, s in enumerate(held) if s >= f * total * (1 - 1e-12)), len(held) - 1)
        out[f] = 2 * r + 1
    return out


def erf(model: nn.Module | str, nodes: Sequence[str] | None = None, *, images: int = 8, data: str = "noise",
        data_root: str | Path | None = None, inputs: torch.Tensor | None = None, input_size: Any = None,
        weights: str | Path | None = None, unit: Sequence[int] | None = None, seed: int = 0,
        batch: int = 4) -> ErfResult:
    """Effective receptive fields of ``nodes`` (default: the last node with a local RF).

    ``model`` is a module (its weights as they are) or a zoo name (random init from
    ``seed`` unless ``weights`` is given: a state_dict, .safetensors, trainer
    checkpoint or rewrite folder, all read without unpickling code).  Inputs are
    ``images`` samples of ``data`` (``"noise"`` or a name in :data:`rffsurgery.data.DATASETS`) or the
    tensor ``inputs``.  ``unit`` is the spatial position (default: each node's centre).
    """
    check("seed", seed)
    check("batch", batch)
    nodes = names(nodes, "erf() nodes") or None
    module, name, label = load_model(model, weights, seed)
    require_finite(module.state_dict().items(), f"the weights of {name} ({label})", NON_FINITE_WEIGHTS)
    size = parse_input_size(input_size, declared_input_size(module) or _zoo_size(model))
    if len(size) != 3:
        raise InvalidArgument(f"ERF heat maps need an image input (C, H, W), got {size}")
    plan = analyze(module, size, name=name)
    layers = _nodes(plan, nodes)
    units = {l.name: _spatial_unit(l, unit) for l in layers}
    _check_memory(plan, len(inputs) if inputs is not None else images, batch)
    if inputs is None:
        inputs, described = sample_inputs(data, images, size, data_root, seed)
    else:
        if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point() or inputs.dim() != len(size) + 1:
            raise InvalidArgument(f"inputs must be a float tensor (N, {', '.join(map(str, size))}), got "
                                  f"{type(inputs).__name__} {brief(inputs)}")
        if tuple(inputs.shape[1:]) != size:
            raise InvalidArgument(f"inputs are {tuple(inputs.shape[1:])}, the model reads {size}")
        described = f"{len(inputs)} given input(s)"
    require_finite([("inputs", inputs)], f"the ERF's {described}", "Give inputs without NaN or infinity.")
    by_name = {n: node for node, n in plan.traced.names.items()}
    gm = plan.traced.graph_module
    total = {l.name: torch.zeros(size[1:], dtype=torch.float64) for l in layers}
    was_training = module.training
    module.eval()
    gm.eval()
    try:
        for start in range(0, len(inputs), batch):
            x = inputs[start:start + batch].detach().clone().requires_grad_(True)
            run = _Capture(gm, (by_name[l.name] for l in layers))
            try:
                with user_code(f"the forward of {name}", FORWARD_FIX, exits_only=True):
                    run.run(x)
            except _Done:
                pass
            for l in layers:
                value = run.captured[by_name[l.name]]
                (grad,) = torch.autograd.grad(select_unit(value, l, units[l.name]).sum(), x,
                                              retain_graph=True)
                require_finite([("input gradient", grad)], f"the ERF of {l.name}",
                               "The model overflows on these inputs: check its weights and the input scale.")
                total[l.name] += grad.abs().sum(dim=(0, 1)).double()
    finally:
        module.train(was_training)
    result = ErfResult(name, size, label, described, aliases={n: find_layer(plan, n).name for n in nodes or ()})
    for l in layers:
        heat = total[l.name]
        heat = heat / heat.sum() if heat.sum() > 0 else heat
        interval = tuple(a.interval(u) if a is not None else None for a, u in zip(l.axes, units[l.name])) \
            if l.status == "ok" else (None,) * len(l.axes)
        squares = _squares(heat, _centre(interval, heat.shape))
        result.nodes.append(NodeErf(l.name, units[l.name], heat, interval, l.rf, squares))
    return result


def _check_memory(plan: Plan, images: int, batch: int) -> None:
    """Refuse an ERF whose inputs and one batch's activations (kept for the backward pass) exceed the memory limit.

    The bound the real-tensor fallback of the analysis uses (``RFFSURGERY_MEMORY_LIMIT_GB``):
    a large ``--input-size`` on a model that accepts any size must fail in one line, not
    exhaust the machine.
    """
    def numel(shape: Any) -> int:
        return math.prod(shape) if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape) else 0

    values = images * math.prod(plan.input_size) + 2 * min(batch, images) * sum(numel(l.shape) for l in plan)
    need, limit = values * 4 / 2**30, fallback_limit()
    if need > limit:
        raise FallbackTooLarge(f"the ERF of {plan.model_name} at input {'x'.join(map(str, plan.input_size))} with "
                               f"{images} input(s) in batches of {batch} would take about {need:.1f} GiB (limit "
                               f"{limit:g} GiB): give a smaller --input-size, fewer --images or a smaller --batch, or "
                               f"raise the limit with {MEMORY_ENV}")


def _zoo_size(model: nn.Module | str) -> tuple[int, ...]:
    if isinstance(model, str):
        return tuple(resolve(model).input_size)
    return (3, 224, 224)


def default_node(plan: Plan) -> str:
    """The last feature map with a local receptive field: the deepest one before global pooling (or flattening)."""
    local = [l for l in plan.local_layers() if l.is_map]
    if not local and not plan.complete:
        raise InvalidArgument(f"{plan.model_name} has no node with a known local receptive field; name one with --nodes")
    if not local:
        raise InvalidArgument(f"{plan.model_name} has no spatial axes after its input: every layer mixes the whole "
                              f"input (an MLP), so no layer has a local receptive field or a centre unit to measure; "
                              f"name a node with --nodes to see its gradient over the whole input")
    return local[-1].name


def _nodes(plan: Plan, nodes: Sequence[str] | None) -> list[LayerRF]:
    """The requested nodes (names or module paths); by default the last node with a local RF."""
    if not nodes:
        return [plan[default_node(plan)]]
    layers = []
    for n in nodes:
        layer = find_layer(plan, n)
        if layer.status not in ("ok", "global") or layer.shape is None:
            raise InvalidArgument(f"node {layer.name} has no tensor geometry ({layer.status}); choose another node")
        layers.append(layer)
    order = {name: i for i, name in enumerate(plan.layers)}
    return sorted({l.name: l for l in layers}.values(), key=lambda l: order[l.name])  # execution order


def growth_nodes(plan: Plan, limit: int = 24) -> list[str]:
    """Main layers with a local RF, thinned evenly to at most ``limit``: the x axis of the growth plot."""
    local = [l.name for l in plan.main_layers() if l.is_local]
    if len(local) <= limit:
        return local
    step = (len(local) - 1) / (limit - 1)
    return list(dict.fromkeys(local[round(i * step)] for i in range(limit)))
