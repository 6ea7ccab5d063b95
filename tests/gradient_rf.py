"""Ground truth for receptive fields: the support of an output unit's input gradient.

Make every weight positive, take the non-linearities and the normalisations out
and read max-pools as sums over their windows: the network becomes a positive
linear map of its input (squeeze-excitation gates aside, which stay positive on
a positive input).  Then an input pixel influences an output unit exactly when
the gradient there is non-zero — no two paths can cancel — and the bounding box
of that gradient's support, per axis, is the unit's receptive field as PyTorch
itself computes it.  None of the engine's formulas are used here.

The substitutions happen while an fx ``Interpreter`` runs the traced probe, so
the probe's graph, and with it every node name, is the analysed model's own:
``plan[name]`` and the probe's node ``name`` are the same node.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from rffsurgery import LayerRF, Plan
from rffsurgery.analysis import select_unit
from rffsurgery.trace import Traced, trace

__all__ = ["Case", "GradientProbe", "assert_exact", "compare", "compare_layout", "compare_unclipped", "crops",
           "default_units", "diagonal_units", "every_unit", "grow_margins", "layout_partitions"]

Span = tuple[int, int] | None  # inclusive (first, last) pixel along one axis; None: nothing read

_MAX_POOLS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}
_MAX_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_ADAPTIVE_MAX = {F.adaptive_max_pool1d: F.adaptive_avg_pool1d, F.adaptive_max_pool2d: F.adaptive_avg_pool2d,
                 F.adaptive_max_pool3d: F.adaptive_avg_pool3d}
_ADAPTIVE_MAX_MODULES = {nn.AdaptiveMaxPool1d: F.adaptive_avg_pool1d, nn.AdaptiveMaxPool2d: F.adaptive_avg_pool2d,
                         nn.AdaptiveMaxPool3d: F.adaptive_avg_pool3d}
_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
# Ops that would zero or sign-flip a gradient somewhere (ReLU below 0, ReLU6/hardsigmoid/clamp
# above their cap, normalisations subtracting a mean): read as the identity.
_IDENTITY_MODULES = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
)
_IDENTITY_FUNCTIONS = {
    F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu,
    F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, torch.relu, torch.sigmoid,
    torch.tanh, torch.clamp,
}
_IDENTITY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_", "clamp_min", "clamp_min_",
                     "clip", "hardswish", "gelu", "silu"}


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def window_sum(n: int, input: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor:
    """A max-pool's windows summed instead of maxed (an unnormalised average pool).

    The gradient of a max reaches one pixel per window; the sum's reaches every
    in-bounds pixel, which is the window the receptive field is about.  Unlike
    ``avg_pool`` this also takes the max-pool's ``dilation``.  The output size is
    the max-pool's own (``ceil_mode`` included): the real op decides it.
    """
    if return_indices:
        raise NotImplementedError("max pooling with return_indices")
    max_pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    size = max_pool(input.detach(), kernel_size, stride, padding, dilation, ceil_mode).shape[2:]
    k, p, d = _tuple(kernel_size, n), _tuple(padding, n), _tuple(dilation, n)
    s = _tuple(stride, n) if stride not in (None, (), []) else k
    # zeros on the left as the pool pads; enough on the right for a ceil_mode window
    pads = [amount for a in reversed(range(n)) for amount in (p[a], p[a] + d[a] * (k[a] - 1) + s[a])]
    channels = input.shape[1]
    ones = input.new_ones((channels, 1, *k))
    out = _CONVS[n](F.pad(input, pads), ones, stride=s, dilation=d, groups=channels)
    return out[(..., *(slice(0, m) for m in size))]


class _Done(Exception):
    """Raised once every requested node has been computed: the rest of the graph is not needed."""


class _Run(fx.Interpreter):
    """Runs the probe graph with the substitutions and records the requested nodes."""

    def __init__(self, gm: fx.GraphModule, wanted: dict[fx.Node, str], cut_global: bool, rank: int,
                 cut: frozenset[fx.Node] = frozenset()) -> None:
        super().__init__(gm)
        self.wanted = wanted
        self.cut_global = cut_global
        self.rank = rank
        self.cut = cut
        self.captured: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and (self.cut_global and _no_spatial_extent(out, self.rank) or n in self.cut):
            out = out.detach()
        if n in self.wanted:
            # a clone: later in-place ops (``out += identity``) must not change what we differentiate
            self.captured[self.wanted[n]] = out.clone()
            if len(self.captured) == len(self.wanted):
                raise _Done
        return out

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        if isinstance(module, _IDENTITY_MODULES):
            return args[0]
        if isinstance(module, _MAX_POOL_MODULES):
            n = len(args[0].shape) - 2
            return window_sum(n, args[0], module.kernel_size, module.stride, module.padding, module.dilation,
                              module.ceil_mode)
        if type(module) in _ADAPTIVE_MAX_MODULES:
            return _ADAPTIVE_MAX_MODULES[type(module)](args[0], module.output_size)
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Callable, args: tuple, kwargs: dict) -> Any:
        if target in _IDENTITY_FUNCTIONS:
            return args[0] if args else kwargs["input"]
        if target in _MAX_POOLS:
            return window_sum(_MAX_POOLS[target], *args, **kwargs)
        if target in _ADAPTIVE_MAX:
            kwargs.pop("return_indices", None)
            return _ADAPTIVE_MAX[target](*args[:2], **kwargs)
        return super().call_function(target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target in _IDENTITY_METHODS:
            return args[0]
        return super().call_method(target, args, kwargs)


def _no_spatial_extent(t: torch.Tensor, rank: int) -> bool:
    """Pooled to one value per channel, or flattened: a tensor that can only carry global context."""
    return t.dim() != rank or all(s == 1 for s in t.shape[2:])


def positive_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A float64 copy in eval mode with every weight in [0.5, 1] / fan_in and every bias 0.

    float64 because the gradient at the edge of a deep receptive field is a product
    of one edge tap per layer, about (0.75 / 9) ** depth: densenet121 would
    underflow float32.  Parameters stop requiring gradients: only the input's is read.
    The copy gets fresh float64 parameters instead of copies of the old values, which
    are all overwritten (vgg's classifier alone is 123M of them).
    """
    fresh = {id(p): nn.Parameter(torch.empty(p.shape, dtype=torch.float64), requires_grad=False)
             for p in model.parameters()}
    probe = copy.deepcopy(model, memo=fresh).double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in probe.named_parameters():
            if name.rsplit(".", 1)[-1] == "bias":
                p.zero_()
            else:
                p.uniform_(0.5, 1.0, generator=gen).div_(p[0].numel() if p.dim() >= 2 else 1)
    return probe


class GradientProbe:
    """A positive, linearised copy of a model and a positive input, ready for gradient reads."""

    def __init__(self, model: nn.Module, input_size: Sequence[int], seed: int = 0) -> None:
        self.module = positive_copy(model, seed)
        self.traced: Traced = trace(self.module, input_shape=(1, *input_size))
        gen = torch.Generator().manual_seed(seed)
        self.input = torch.empty((1, *input_size), dtype=torch.float64).uniform_(0.5, 1.0, generator=gen)
        self.input.requires_grad_()
        self._by_name = {name: node for node, name in self.traced.names.items()}

    @property
    def extent(self) -> tuple[int, ...]:
        return tuple(self.input.shape[2:])

    def node(self, name: str) -> fx.Node:
        """A node by its name or by the path of the module whose output it is (as ``plan[...]`` resolves)."""
        found = self._by_name.get(name) or self._by_name.get(self.traced.module_outputs.get(name, ""))
        if found is None:
            raise KeyError(f"the probe has no node or module {name!r}")
        return found

    def outputs(self, names: Iterable[str], cut_global: bool = False, cut: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """One forward pass; the value of each named node (still attached to the input's graph).

        With ``cut_global`` every tensor with no spatial extent left (a pooled
        squeeze-excitation vector, a flattened feature) is detached, so that
        gradients only flow along the paths that keep a local geometry; the nodes
        named in ``cut`` are detached too (a channel-attention matrix, which keeps
        the shape of a feature map).
        """
        wanted = {self.node(name): name for name in names}
        run = _Run(self.traced.graph_module, wanted, cut_global, self.input.dim(), frozenset(map(self.node, cut)))
        try:
            run.run(self.input.clone())
        except _Done:
            pass
        missing = set(wanted.values()) - set(run.captured)
        if missing:
            raise KeyError(f"nodes never computed: {sorted(missing)}")
        return run.captured

    def support(self, value: torch.Tensor, index: Sequence[int]) -> tuple[Span, ...]:
        """Per axis, the first and last input pixel whose gradient is non-zero for spatial unit ``index``.

        The unit is summed over channels: after a concatenation, channel 0 alone
        would only see the first branch.  A tensor with no spatial dims left
        (pooled and flattened) is one unit, ``index == ()``.
        """
        if value.dim() != len(index) + 2:
            raise ValueError(f"unit {tuple(index)} of a tensor shaped {tuple(value.shape)}: expected (N, C, *spatial)")
        return self.support_of(value[(0, slice(None), *index)])

    def support_of(self, elements: torch.Tensor, rel: float = 0.0) -> tuple[Span, ...]:
        """Per axis, the first and last input pixel whose gradient for the sum of ``elements`` exceeds
        ``rel`` × its largest magnitude (non-zero for ``rel == 0``)."""
        n = self.input.dim() - 2
        (grad,) = torch.autograd.grad(elements.sum(), self.input, retain_graph=True)
        mag = grad[0].abs().amax(dim=0)
        hit = mag > rel * mag.max() if rel else mag != 0
        spans: list[Span] = []
        for axis in range(n):
            others = tuple(a for a in range(n) if a != axis)
            line = hit.any(dim=others) if others else hit
            where = line.nonzero().flatten()
            spans.append((int(where[0]), int(where[-1])) if len(where) else None)
        return tuple(spans)


def default_units(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The centre, and first, last, middle and middle + 1 along each axis (rotated between axes).

    The centre is the unit most likely to lie inside the input on every axis; the
    others put each axis at both borders and at two neighbouring phases.
    """
    picks = [(0, n - 1, n // 2, min(n // 2 + 1, n - 1)) for n in shape]
    units = [tuple(n // 2 for n in shape)] + [tuple(p[(k + a) % 4] for a, p in enumerate(picks)) for k in range(4)]
    return list(dict.fromkeys(units))


def diagonal_units(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Units (i, i, …) for every i: each axis sees every position, so every phase of an upsampling."""
    return [tuple(i % n for n in shape) for i in range(max(shape, default=1))]


def _clip(span: tuple[int, int], n: int) -> Span:
    lo, hi = max(span[0], 0), min(span[1], n - 1)
    return (lo, hi) if lo <= hi else None


Border = Literal["edges", "bound", "within"]  # how units that may read padding are judged, see Case


@dataclass(frozen=True)
class Case:
    """One unit of one node: the engine's intervals (unclipped) and the gradient's support.

    The engine's interval is the hull of the unit's taps as if every layer were
    infinite (Distill's convention).  A unit whose interval lies inside the input on
    every axis reads no padding anywhere — unless some layer :func:`crops` its
    output, see ``"within"`` — so the gradient must show that interval exactly.
    At the border the real support can be smaller than the interval
    clipped to the input: a tap that falls in an intermediate layer's padding reads
    nothing, while the engine maps it on to real pixels (TinyUNet ``up2`` unit 12:
    ``bottom``'s dilated tap lands in its padding, the support stops at pixel 30 of
    31).  So a border unit is judged by ``border``:

    * ``"bound"``: the support lies within the clipped interval.  Always valid.  In
      this mode a unit may also read nothing at all even when its interval lies
      inside the input: every tap can land in an intermediate layer's padding (a
      1×1 conv with padding 1 makes its border units pure padding).
    * ``"edges"``: also, each edge of the interval that lies inside the input is hit
      exactly.  Valid when no unit of any layer has all its taps in padding — true of
      centred kernels and TF-'SAME' padding (smaller than the kernel), so of the
      published architectures, but not of random graphs (F.pad's own zeros, the
      extra outputs of ``output_padding``, or a branch reading only padding can
      carry an interval edge that no real pixel backs).
    * ``"within"``: every unit, inside the input or not, is judged as ``"bound"``
      judges border units.  For models where some layer :func:`crops` its output:
      there the premise above fails — a cropped output reads real pixels, so a unit
      that reads it (as padding) can have an interval inside the input and still
      read less (``ConvTranspose1d(k=3, s=3, p=1)`` then a 'same' conv of kernel 2,
      dilation 3: unit 0 reads the cropped output −1, whose image is pixel 0; the
      engine says (0, 1), the gradient (1, 1)).  Pair it with
      :func:`compare_unclipped`, which checks every interval exactly.

    An axis the engine reports as global (``None``) must be read whole.
    """

    node: str
    index: tuple[int, ...]
    what: str
    engine: tuple[tuple[int, int] | None, ...] | str
    got: tuple[Span, ...]
    extent: tuple[int, ...]
    border: Border = "edges"

    @property
    def ok(self) -> bool:
        if isinstance(self.engine, str):
            return False
        clipped = [(0, n - 1) if e is None else _clip(e, n) for e, n in zip(self.engine, self.extent, strict=True)]
        if any(c is None for c in clipped):  # only padding along some axis: reads nothing
            return all(g is None for g in self.got)
        inside = all(e is None or (e[0] >= 0 and e[1] <= n - 1) for e, n in zip(self.engine, self.extent))
        if inside and self.border != "within":
            reads_nothing = all(g is None for g in self.got)
            return tuple(self.got) == tuple(clipped) or (self.border == "bound" and reads_nothing)
        if any(g is None for g in self.got):
            return self.border != "edges"
        within = all(c[0] <= g[0] and g[1] <= c[1] for c, g in zip(clipped, self.got))
        if self.border != "edges":
            return within
        return within and all(
            g == c if e is None else (e[0] < 0 or g[0] == e[0]) and (e[1] > n - 1 or g[1] == e[1])
            for e, g, c, n in zip(self.engine, self.got, clipped, self.extent)
        )

    def __str__(self) -> str:
        return f"{self.node} {self.index} {self.what}: engine {self.engine} in {self.extent}, gradient {self.got}"


def crops(model: nn.Module) -> bool:
    """Whether some layer drops outputs that read real pixels: a transposed conv with padding.

    Its padding ``p`` removes ``p`` outputs on each side of the full transposed
    output (less ``output_padding`` on the right), and those read input pixels.  Every
    other layer's missing outputs (past a strided conv's last window, say) read
    padding themselves, which is what lets :class:`Case` call a unit whose interval
    lies inside the input an interior unit.  Negative ``F.pad`` amounts and slices crop
    too; the models compared here have none.
    """
    return any(isinstance(m, nn.modules.conv._ConvTransposeNd) and any(m.padding) for m in model.modules())


def _engine_intervals(layer: LayerRF, index: tuple[int, ...]) -> tuple[tuple[int, int] | None, ...] | str:
    """The engine's unclipped interval per axis (``None``: depends on the whole axis), or why there is none."""
    if layer.status not in ("ok", "global"):
        return f"status {layer.status}: {layer.reason}"
    return tuple(None if a is None else a.interval(index[k]) for k, a in enumerate(layer.axes))


def compare(plan: Plan, probe: GradientProbe, names: Iterable[str],
            units: Callable[[Sequence[int]], list[tuple[int, ...]]] = default_units,
            border: Border = "edges") -> list[Case]:
    """Engine versus gradient for several units of each named node (``border``: see :class:`Case`).

    A node flagged ``global_context`` (fed by a squeeze-excitation gate) must show
    a gradient over the whole input, and, once the spatially pooled tensors are cut
    from the graph, exactly its local receptive field.
    """
    layers = {name: plan[name] for name in names}
    full = probe.outputs(layers)
    gated = [name for name, layer in layers.items() if layer.global_context]
    local = probe.outputs(gated, cut_global=True) if gated else {}
    extent = probe.extent
    whole = (None,) * len(extent)
    cases = []
    for name, layer in layers.items():
        for index in units(full[name].shape[2:]):
            engine = _engine_intervals(layer, index)
            if layer.global_context:
                cases.append(Case(name, index, "with the gate", whole, probe.support(full[name], index), extent))
                cases.append(Case(name, index, "gate cut", engine, probe.support(local[name], index), extent,
                                  border))
            else:
                cases.append(Case(name, index, "support", engine, probe.support(full[name], index), extent, border))
    return cases


def grow_margins(plan: Plan, names: Iterable[str], steps: Sequence[int]) -> tuple[int, ...]:
    """Per axis, how far to grow the input for :func:`compare_unclipped`.

    A multiple of ``steps[a]`` (the product of every downsampling factor along axis
    ``a``, so that units shift by whole numbers), and wider than any checked
    interval's overhang plus a receptive field plus a stride: then no checked unit
    comes near a layer's border on the grown input, where taps would fall in padding.
    """
    margins = []
    for a, (size, step) in enumerate(zip(plan.input_size[1:], steps, strict=True)):
        reach = 0
        for name in names:
            axis, last = plan[name].axes[a], plan[name].shape[1 + a] - 1
            overhang = max(-axis.interval(0)[0], axis.interval(last)[1] - (size - 1), 0)
            reach = max(reach, overhang + axis.size)
        margins.append(step * math.ceil((reach + step + 1) / step))
    return tuple(margins)


def compare_unclipped(plan: Plan, model: nn.Module, names: Iterable[str], margins: Sequence[int],
                      units: Callable[[Sequence[int]], list[tuple[int, ...]]] = default_units) -> list[Case]:
    """The engine's unclipped intervals, exactly, border units included.

    The model runs on its input grown by ``margins[a]`` pixels on both sides of
    axis ``a``.  When every margin is a multiple of every downsampling factor and
    the model is translation-equivariant, each node's map grows by the same number
    of units on both sides and the old units sit, shifted, in the middle of the new
    map: their receptive fields are interior now, nothing is clipped, and the
    gradient support shifted back must be the engine's interval itself.  Models whose
    geometry depends on the input size (adaptive pooling, interpolation to a size or
    with ``align_corners=True``, dynamic 'SAME' padding) are not equivariant: use
    :func:`compare` for them.
    """
    channels, *sizes = plan.input_size
    grown = GradientProbe(model, (channels, *(n + 2 * m for n, m in zip(sizes, margins, strict=True))))
    names = list(names)
    values = grown.outputs(names)
    cases = []
    for name in names:
        layer = plan[name]
        shape = layer.shape[1:]
        shift = [(g - n) // 2 for g, n in zip(values[name].shape[2:], shape)]  # equivariant: even growth
        for index in units(shape):
            engine = _engine_intervals(layer, index)
            if not isinstance(engine, str):
                engine = tuple((lo + m, hi + m) for (lo, hi), m in zip(engine, margins))
                if any(lo <= 0 or hi >= n - 1 for (lo, hi), n in zip(engine, grown.extent)):
                    raise ValueError(f"margins {tuple(margins)} too small for {name} {index}: {engine}")
            got = grown.support(values[name], [u + d for u, d in zip(index, shift)])
            cases.append(Case(name, index, "grown input", engine, got, grown.extent))
    return cases


def assert_exact(cases: list[Case]) -> None:
    """Fail with every mismatching unit listed."""
    failures = [str(c) for c in cases if not c.ok]
    assert not failures, f"{len(failures)}/{len(cases)} units differ:\n" + "\n".join(failures)


def every_unit(grid: Sequence[int | None]) -> list[tuple[int, ...]]:
    """Every unit of a node's grid (index 0 along a global axis, which holds no units)."""
    return [tuple(u) for u in itertools.product(*(range(n or 1) for n in grid))]


def layout_partitions(layer: LayerRF, shape: Sequence[int]) -> None:
    """The units of ``layer`` (one index per axis) name disjoint element sets covering every element.

    ``select_unit`` is the engine's claim of where each unit lives (NCHW, NHWC, windows
    folded into the batch, tokens, sub-pixel channels); this checks that it is a
    partition of the tensor — what a tensor of element numbers says, not a formula —
    so that "unit u reads I" is a statement about real elements.  Extra elements
    (``lead`` / ``trail``, a class token) belong to no unit.
    """
    numbers = torch.arange(math.prod(shape)).view(*shape)
    seen = torch.zeros(math.prod(shape), dtype=torch.long)
    for unit in every_unit(layer.grid):
        seen[select_unit(numbers, layer, unit).flatten()] += 1
    extra = torch.zeros(shape, dtype=torch.bool)
    for k, spec in enumerate(layer.layout):
        if spec is not None and (spec.lead or spec.trail):
            index = [slice(None)] * len(shape)
            index[k] = [*range(spec.lead), *range(shape[k] - spec.trail, shape[k])]
            extra[tuple(index)] = True
    assert (seen[~extra.flatten()] == 1).all(), f"{layer.name}: units do not partition its elements"
    assert (seen[extra.flatten()] == 0).all(), f"{layer.name}: an extra element belongs to a unit"


def compare_layout(plan: Plan, probe: GradientProbe, names: Iterable[str],
                   units: Callable[[Sequence[int]], list[tuple[int, ...]]] = every_unit,
                   rel: float = 0.0, border: Border = "edges") -> list[Case]:
    """Engine versus gradient for nodes in any layout: each unit's elements are what ``select_unit`` names.

    Nodes whose status is global are one unit that must read the whole input.  The
    layout is checked to partition the node's elements first (:func:`layout_partitions`).
    ``border`` judges units that may read padding (see :class:`Case`): ``"bound"`` where
    windows pad the map, whose padded units read nothing at all.
    A node with global context must read the whole input, and its local interval once
    every node the engine reports global along some axis (the summaries: a pooled
    gate, a channel attention matrix, keys pooled to one position) is detached, as
    :func:`compare` does.
    """
    layers = {name: plan[name] for name in names}
    values = probe.outputs(layers)
    local = {}
    for name, layer in layers.items():
        if layer.global_context:  # cut every node that is global along an axis this one keeps local
            keeps = [a for a, axis in enumerate(layer.axes) if axis is not None]
            summaries = [l.name for l in plan if l.status in ("ok", "global") and l.kind != "output"
                         and any(l.axes[a] is None for a in keeps)]
            local.update(probe.outputs([name], cut=summaries))
    extent = probe.extent
    whole = (None,) * len(extent)
    cases = []
    for name, layer in layers.items():
        value = values[name]
        if layer.status == "global":
            cases.append(Case(name, (), "global", whole, probe.support_of(value, rel), extent))
            continue
        layout_partitions(layer, tuple(value.shape))
        for unit in units(tuple(n or 1 for n in layer.grid)):  # index 0 along a global axis
            engine = _engine_intervals(layer, unit)
            if layer.global_context:
                gated_support = probe.support_of(select_unit(value, layer, unit), rel)
                # a window's padded token reads nothing, gate or not: judged by the same ``border``
                cases.append(Case(name, unit, "with the gate", whole, gated_support, extent, border))
                cut_support = probe.support_of(select_unit(local[name], layer, unit), rel)
                cases.append(Case(name, unit, "gate cut", engine, cut_support, extent, border))
            else:
                got = probe.support_of(select_unit(value, layer, unit), rel)
                cases.append(Case(name, unit, "layout", engine, got, extent, border))
    return cases
