"""Parameters and MACs: the one counter behind analyze's table and the rewrite report.

MACs are multiply-accumulates of the convolutions and matrix products (``mm``,
``bmm``, ``addmm``, convolutions, attention) for one input sample, counted by
``torch.utils.flop_counter.FlopCounterMode`` as FLOPs / 2 on the meta device, so
counting costs no compute and no memory.  Elementwise work (norms, activations,
bias adds, pooling) is not counted, as is usual for MACs: torchvision's ResNet-50
at 224 px is the familiar 4.09 GMACs (torchvision's model table calls it "GFLOPS").

Parameters of a node are those of the module it calls (all of them, children
included, for a module kept whole), the parameter it reads (``get_attr``), or those
``get_attr`` nodes feed to it (a functional conv's weight); a parameter used twice
is counted at each use, the model's total counts it once.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from ..geometry.rules import lookup_module
from ..trace.meta import read_attr
from .result import Plan

__all__ = ["Costs", "count_params", "macs", "node_costs"]


def count_params(module: nn.Module) -> int:
    """Parameters of ``module``, each shared tensor once."""
    return sum(p.numel() for p in module.parameters())


@contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _meta_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (persistent or not, shared ones under each name) as a meta tensor."""
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return {name: t.to("meta") for name, t in named}


def macs(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, int]:
    """MACs per sample of every module that does any, by module path (``""``: the whole model)."""
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode  # imported on use: it costs ~0.25 s

    with _eval(model), FlopCounterMode(display=False) as counter, torch.no_grad():
        functional_call(model, _meta_state(model), (torch.empty(1, *input_size, device="meta"),))
    root = type(model).__name__
    out = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            out[""] = sum(ops.values()) // 2
        elif key.startswith(root + "."):
            out[key[len(root) + 1:]] = sum(ops.values()) // 2
    return out


@dataclass(frozen=True)
class Costs:
    """Per node name: parameters and MACs per sample; totals for the model.

    ``macs`` is empty and ``macs_unavailable`` says why when the graph cannot run on
    the meta device (a model that reads tensor values while running).
    """

    params: dict[str, int]
    macs: dict[str, int]
    total_params: int
    total_macs: int | None
    macs_unavailable: str = ""


class _PerNode(fx.Interpreter):
    """Runs the graph and charges each node with the FLOPs counted while it ran.

    An op whose rule builds its output from the module's configuration (a recurrence, which the
    meta device would step once per position) is not run: its rule also gives its MACs.
    """

    def __init__(self, gm: fx.GraphModule, counter: FlopCounterMode) -> None:
        super().__init__(gm)
        self.counter = counter
        self.flops: dict[fx.Node, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_module":
            module = self.fetch_attr(n.target)
            rule = lookup_module(module)
            if rule is not None and callable(rule.shape) and rule.macs is not None:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                out = rule.shape(module, args, kwargs)
                if out is not None:
                    self.flops[n] = 2 * rule.macs(module, args, kwargs)
                    return out
        before = self.counter.get_total_flops()
        out = super().run_node(n)
        self.flops[n] = self.counter.get_total_flops() - before
        return out


class _Runner(nn.Module):
    """Holds the graph module so that ``functional_call`` can swap its tensors for meta ones."""

    def __init__(self, gm: fx.GraphModule, counter: FlopCounterMode) -> None:
        super().__init__()
        self.gm = gm
        self.interpreter = _PerNode(gm, counter)

    def forward(self, x: torch.Tensor) -> Any:
        return self.interpreter.run(x)


def node_costs(plan: "Plan") -> Costs:
    """Parameters and MACs per sample of every node of ``plan``, by node name (kept in ``plan.memo``).

    Counting runs the graph once more on the meta device; a table and a JSON report of
    the same plan share that run.
    """
    if "costs" not in plan.memo:
        plan.memo["costs"] = _node_costs(plan)
    return plan.memo["costs"]


def _node_costs(plan: "Plan") -> Costs:
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    traced = plan.traced
    modules = dict(traced.root.named_modules())
    params = {}
    for node, name in traced.names.items():
        if node.op == "call_module":
            params[name] = count_params(modules[node.target])
        else:  # a parameter itself, or a function reading parameters (F.conv2d(x, weight), ONNX, aten graphs)
            read = [node] if node.op == "get_attr" else [a for a in node.all_input_nodes if a.op == "get_attr"]
            values = [read_attr(traced.root, str(a.target)) for a in read]
            if any(isinstance(v, nn.Parameter) for v in values):
                params[name] = sum(v.numel() for v in values if isinstance(v, nn.Parameter))
    total_params = count_params(traced.root)
    gm = traced.graph_module
    inputs = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if not inputs or any(not n.args for n in inputs[1:]):  # fx's interpreter fills in the defaults of the rest
        return Costs(params, {}, total_params, None, "the model takes more than one input")
    state = {f"gm.{k}": v for k, v in _meta_state(gm).items()}
    for node in traced.graph.nodes:  # plain tensor attributes (fx constants) too
        value = read_attr(gm, node.target) if node.op == "get_attr" else None
        if isinstance(value, torch.Tensor) and f"gm.{node.target}" not in state:
            state[f"gm.{node.target}"] = value.to("meta")
    with FlopCounterMode(display=False) as counter:
        runner = _Runner(gm, counter)
        try:
            with _eval(gm), torch.no_grad():
                functional_call(runner, state, (torch.empty(1, *plan.input_size, device="meta"),))
        except Exception as exc:  # a model that needs real values: report, do not guess
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Costs(params, {}, total_params, None, f"the graph does not run on the meta device ({reason})")
    flops = runner.interpreter.flops
    per_node = {traced.names[n]: f // 2 for n, f in flops.items()}
    return Costs(params, per_node, total_params, sum(per_node.values()))
