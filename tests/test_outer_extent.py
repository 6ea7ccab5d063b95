"""Honest summaries after upsampling: the outer extent bounds every unit, against gradients too.

Read with Distill's formula ``[−P + u·S, −P + u·S + RF − 1]``, the single RF / S / P
triple misses units after a transposed conv or an upsampling (checked below, so the
bound is needed).  ``outer_extent`` W makes ``[floor(−P + u·S), ceil(−P + u·S) + W − 1]``
contain every unit's interval: checked exhaustively over a period against
``plan[node].interval(u)``, checked to be the smallest such W, and checked against the
gradient support (tests/gradient_rf.py), borders included, on the project's upsampling
models: TinyUNet (transposed conv, nn.Upsample, skips), F.interpolate, and random graphs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from torch import nn

from rffsurgery import Plan, analyze
from rffsurgery.cli import main

from gradient_rf import compare_unclipped, diagonal_units, grow_margins
from test_ground_truth import TinyUNet
from test_property import Graph, graphs

pytestmark = pytest.mark.usefixtures("one_thread")


class Interpolating(nn.Module):
    """F.interpolate (nearest ×2, bilinear ×3), a transposed conv and convs in between."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1)
        self.mix = nn.Conv2d(2, 2, 3, padding=1)
        self.out = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.down(x))
        x = self.mix(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.out(F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False))


def _bound(axis, u: int) -> tuple[int, int]:
    left = -axis.padding + u * axis.stride
    return math.floor(left), math.ceil(left) + axis.outer - 1


def _check_plan(plan: Plan) -> None:
    """Exhaustive over two periods (and a negative one): contained, and W is the smallest that works."""
    for layer in plan:
        if layer.status != "ok":
            continue
        for a, axis in enumerate(layer.axes):
            if axis is None:
                continue
            units = range(-axis.map.period, 2 * axis.map.period)
            for u in units:
                lo, hi = axis.interval(u)
                b_lo, b_hi = _bound(axis, u)
                assert b_lo <= lo and hi <= b_hi, (layer.name, a, u, (lo, hi), (b_lo, b_hi))
            assert any(axis.interval(u)[1] == _bound(axis, u)[1] for u in units), (layer.name, "W not tight")
            assert layer.rf_min[a] <= layer.rf[a] <= layer.outer_extent[a]


def test_distill_reading_misses_units_after_upsampling() -> None:
    """Why the outer extent exists: RF alone does not bound TinyUNet's decoder units."""
    plan = analyze(TinyUNet(), (3, 32, 32))
    axis = plan["up1"].axes[0]
    missed = [u for u in range(32)
              if axis.interval(u)[1] > -axis.padding + u * axis.stride + axis.size - 1]
    assert missed and plan["up1"].outer_extent[0] > plan["up1"].rf[0]
    assert plan["dec1"].rf_min[0] < plan["dec1"].rf[0]  # the RF varies over positions: 36–40


@pytest.mark.parametrize("build, size", [(TinyUNet, (3, 32, 32)), (Interpolating, (2, 12, 12))])
def test_outer_extent_bounds_every_unit_of_the_upsampling_models(build, size) -> None:
    plan = analyze(build().eval(), size)
    assert plan.complete
    _check_plan(plan)


@pytest.mark.parametrize("build, size", [(TinyUNet, (3, 32, 32)), (Interpolating, (2, 12, 12))])
def test_outer_extent_bounds_the_gradient_support(build, size) -> None:
    """On a grown input every unit is interior, so its gradient support is unclipped ground truth."""
    torch.manual_seed(0)
    model = build().eval()
    plan = analyze(model, size)
    names = [l.name for l in plan.main_layers() if l.is_local]
    margins = grow_margins(plan, names, (4, 4) if build is TinyUNet else (2, 2))
    cases = compare_unclipped(plan, model, names, margins, units=diagonal_units)
    for case in cases:
        layer = plan[case.node]
        for a, (got, m) in enumerate(zip(case.got, margins)):
            lo, hi = _bound(layer.axes[a], case.index[a])
            assert got is not None and lo <= got[0] - m and got[1] - m <= hi, (str(case), (lo, hi))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graph=graphs())
def test_outer_extent_bounds_every_unit_of_random_graphs(graph: Graph) -> None:
    _check_plan(analyze(graph.model, graph.input_size))


def test_unit_option_prints_the_exact_interval() -> None:
    plan = analyze(TinyUNet(), (3, 32, 32))
    done = CliRunner().invoke(main, ["analyze", f"{__file__.replace('test_outer_extent', 'test_ground_truth')}:TinyUNet",
                                     "--input-size", "3,32,32", "--node", "up1", "--unit", "5,6"])
    assert done.exit_code == 0, done.output
    (r0, r1), (c0, c1) = plan["up1"].interval((5, 6))
    assert f"rows {r0}…{r1}" in done.output and f"cols {c0}…{c1}" in done.output
    # what the gradient shows for that unit, grown input
    model = TinyUNet().eval()
    margins = grow_margins(plan, ["up1"], (4, 4))
    (case,) = [c for c in compare_unclipped(plan, model, ["up1"], margins, units=lambda s: [(5, 6)])]
    assert case.ok
    bad = CliRunner().invoke(main, ["analyze", "resnet18", "--node", "layer2", "--unit", "99,0"])
    assert bad.exit_code == 1 and "not a position" in bad.output
    assert CliRunner().invoke(main, ["analyze", "resnet18", "--unit", "1,1"]).exit_code == 2
