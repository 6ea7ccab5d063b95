"""Models torch.fx cannot trace, captured with torch.export: exact for the branch the example input took.

The ground truth is the gradient of the model itself, run eagerly on that same example
(positive weights, max-pools read as window sums: ``gradient_rf``), so the oracle takes
the same branch as the capture.  The aten operators of the captured graph are entries of
the rules table: a model captured both ways gets the same geometry from each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from gradient_rf import Case, assert_exact, default_units, positive_copy, window_sum
from rffsurgery import FreezePlan, analyze, build_freeze_plan
from rffsurgery.cli import main
from rffsurgery.trace import TraceError

GEOMETRY = {"conv", "conv_transpose", "pool", "adaptive_pool", "interpolate", "pad"}


class Branchy(nn.Module):
    """Branches on the input's values: a bright image goes through ``a``, a dark one through ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x.mean() > 0.75
        x = self.pool(torch.relu(self.conv1(x)))
        return self.a(x) if bright else self.b(x)


class _WindowSum(nn.Module):
    """A max-pool read as the sum over its window: the gradient reaches every pixel the window covers."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pool
        return window_sum(2, x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode)


def eager_cases(plan, model: nn.Module, example: torch.Tensor, names: list[str]) -> list[Case]:
    """Engine versus the gradient of the model run eagerly on ``example`` (so on the branch it takes)."""
    probe = positive_copy(model)
    for name, module in list(probe.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            probe.set_submodule(name, _WindowSum(module))
    captured: dict[str, torch.Tensor] = {}
    for name in names:
        probe.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    x = example.double().clone().requires_grad_()
    probe(x)
    cases = []
    for name in names:
        out, layer = captured[name], plan[name]
        for unit in default_units(out.shape[2:]):
            (grad,) = torch.autograd.grad(out[(0, slice(None), *unit)].sum(), x, retain_graph=True)
            hit = (grad[0] != 0).any(dim=0)
            spans = []
            for axis in range(hit.dim()):
                where = hit.any(dim=1 - axis).nonzero().flatten()
                spans.append((int(where[0]), int(where[-1])) if len(where) else None)
            engine = tuple(a.interval(u) for a, u in zip(layer.axes, unit))
            cases.append(Case(name, unit, "eager gradient", engine, tuple(spans), tuple(x.shape[2:])))
    return cases


@pytest.mark.parametrize("low, high, taken, other", [(0.9, 1.0, "a", "b"), (0.5, 0.6, "b", "a")])
def test_value_branches_are_captured_for_the_branch_taken(low: float, high: float, taken: str, other: str) -> None:
    model = Branchy().eval()
    example = torch.empty(1, 2, 20, 18).uniform_(low, high, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TraceError, match="data-dependent control flow"):
        analyze(model, (2, 20, 18), capture="fx")
    plan = analyze(model, (2, 20, 18), example=example)  # auto: fx fails, torch.export takes over
    assert plan.capture == "export" and plan.shape_specialised and plan.complete
    assert taken in plan and other not in plan
    assert plan["conv1.weight"].params == ("conv1.weight",) and f"{taken}.weight" in plan[taken].params
    assert_exact(eager_cases(plan, model, example, ["conv1", "pool", taken]))


class Mixed(nn.Module):
    """Functional ops whose aten forms the export capture must map: pads, ceil pools, resampling, channels-last MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem(x), (1, 0, 2, 1))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        y = F.interpolate(x, scale_factor=2, mode="bilinear")
        z = F.interpolate(self.up(x), size=y.shape[-2:], mode="nearest")
        x = torch.cat([y, z[:, :, :, :]], dim=1)[:, :8, 1:]
        x = x + self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = torch.cat([F.avg_pool2d(x, 2, ceil_mode=True).mean((2, 3)), F.adaptive_max_pool2d(x, 1).flatten(1)], 1)
        return self.head(x)


@pytest.mark.parametrize("model, size", [(Mixed(), (3, 37, 30)), ("resnet18", (3, 64, 64))], ids=["mixed", "resnet18"])
def test_the_exported_graph_has_the_traced_geometry(model, size) -> None:
    traced, exported = analyze(model, size, capture="fx"), analyze(model, size, capture="export")
    assert exported.capture == "export" and exported.complete

    def geometries(plan) -> dict[str, list]:
        found: dict[str, list] = {}
        for l in plan:
            if l.rule in GEOMETRY:
                found.setdefault(l.rule, []).append((l.rf, l.stride, l.padding, l.status, l.global_context))
        return found

    assert geometries(exported) == geometries(traced)
    modules = [l.name for l in traced if l.kind == "call_module" and l.rule in GEOMETRY]
    assert modules and all(exported[n].axes == traced[n].axes for n in modules)  # same names for module layers
    assert exported.output().rf == traced.output().rf


def test_cli_capture_option_and_freeze_plans(tmp_path: Path) -> None:
    source = tmp_path / "branchy.py"
    source.write_text(Path(__file__).read_text().split("class _WindowSum")[0])
    spec = f"{source}:Branchy"
    runner = CliRunner()
    refused = runner.invoke(main, ["analyze", spec, "--input-size", "2,20,18", "--capture", "fx"])
    assert refused.exit_code == 1 and "--capture export" in refused.output
    table = runner.invoke(main, ["analyze", spec, "--input-size", "2,20,18"])
    assert table.exit_code == 0 and "captured by torch.export" in table.output, table.output
    data = json.loads(runner.invoke(main, ["analyze", spec, "--input-size", "2,20,18", "--json"]).output)
    assert data["capture"] == "export" and data["shape_specialised"]
    out = tmp_path / "plan.json"
    made = runner.invoke(main, ["analyze", spec, "--input-size", "2,20,18", "--policy", "names", "--select", "conv1",
                                "--export-plan", str(out)])
    assert made.exit_code == 0, made.output
    plan = FreezePlan.load(out)
    assert plan.capture == "export" and plan.parameter_names == ("conv1.weight", "conv1.bias")
    checked = runner.invoke(main, ["plan", "check", str(out), spec])
    assert checked.exit_code == 0 and "ok:" in checked.output, checked.output
    model = Branchy()
    assert build_freeze_plan(analyze(model, (2, 20, 18)), "names", patterns=["conv1"]).check(model) == ""
