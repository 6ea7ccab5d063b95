"""Effective receptive fields against analytic truth, and the ERF's support against the theoretical RF.

* Luo et al. (2016): for a stack of n linear k×k box filters (weights 1/k², zero
  padding) the ERF of an interior unit is the n-fold discrete convolution of the box
  with itself, here computed with numpy's ``convolve``, nothing of ours.
* A pixel outside a unit's theoretical RF has no path to it, so its gradient is
  exactly zero, whatever the weights: checked over random graphs (tests/test_property.py's
  generator) against ``plan[node].interval``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.analysis.erf import FRACTIONS, erf
from rffsurgery.errors import InvalidArgument

from test_property import Graph, graphs

pytestmark = pytest.mark.usefixtures("one_thread")


def box_stack(n: int, k: int) -> nn.Sequential:
    convs = [nn.Conv2d(1, 1, k, padding=k // 2, bias=False) for _ in range(n)]
    for conv in convs:
        nn.init.constant_(conv.weight, 1 / k**2)
    return nn.Sequential(*convs)


def analytic_box_erf(n: int, k: int) -> np.ndarray:
    """The n-fold convolution of the k×k box 1/k² (separable: the outer product of the 1-D ones)."""
    line = np.ones(1)
    for _ in range(n):
        line = np.convolve(line, np.ones(k) / k)
    return np.outer(line, line)


@pytest.mark.parametrize("n, k", [(1, 3), (2, 3), (4, 3), (3, 5), (6, 3)])
def test_box_filter_stack_erf_is_the_convolution_of_boxes(n: int, k: int) -> None:
    side = 41
    result = erf(box_stack(n, k), input_size=(1, side, side), images=3)
    node = result.nodes[0]
    truth = np.zeros((side, side))
    kernel = analytic_box_erf(n, k)
    r = kernel.shape[0] // 2
    truth[side // 2 - r:side // 2 + r + 1, side // 2 - r:side // 2 + r + 1] = kernel
    got = node.heatmap.numpy()
    assert np.abs(got - truth).max() < 1e-6  # shares of the contribution (the kernel sums to 1)
    assert np.abs(got / got.max() - truth / truth.max()).max() < 1e-4  # as drawn: max = 1
    assert node.interval == ((side // 2 - r, side // 2 + r),) * 2


def test_squares_of_a_single_box() -> None:
    """One 5×5 box spreads evenly: 20 % and 30 % fit a 3×3 square (9/25), 50 % and 99 % need 5×5."""
    node = erf(box_stack(1, 5), input_size=(1, 21, 21), images=1).nodes[0]
    assert node.squares == {0.2: 3, 0.3: 3, 0.5: 5, 0.99: 5}
    assert node.area_ratio(0.5) == pytest.approx(25 / 21**2)


def test_cli_writes_the_analytic_heat_map(tmp_path: Path) -> None:
    source = tmp_path / "boxes.py"
    source.write_text("import sys\nsys.path.insert(0, %r)\nfrom test_erf import box_stack\n"
                      "def model():\n    m = box_stack(4, 3)\n    m.default_input_size = (1, 25, 25)\n    return m\n"
                      % str(Path(__file__).parent))
    out = tmp_path / "out"
    args = ["erf", f"{source}:model", "--images", "2", "--out", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    data = json.loads((out / "erf.json").read_text())
    (node,) = data["nodes"]
    heat = np.array(node["heatmap"])
    truth = np.zeros((25, 25))
    truth[8:17, 8:17] = analytic_box_erf(4, 3)
    assert np.abs(heat - truth / truth.max()).max() < 1e-4
    assert [s["fraction"] for s in node["squares"]] == list(FRACTIONS)
    assert (out / "erf-3.png").stat().st_size > 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel lengths")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graph=graphs(), data=st.data())
def test_erf_never_leaves_the_theoretical_rf(graph: Graph, data: st.DataObject) -> None:
    assume(len(graph.input_size) == 3)  # heat maps are 2-D
    torch.manual_seed(0)
    plan = analyze(graph.model, graph.input_size)
    name = data.draw(st.sampled_from(graph.names))
    shape = plan[name].shape[1:]
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    node = erf(graph.model, [name], input_size=graph.input_size, images=2, unit=unit).nodes[0]
    hit = node.heatmap.nonzero()
    (r0, r1), (c0, c1) = plan[name].interval(unit)
    if len(hit):
        assert r0 <= int(hit[:, 0].min()) and int(hit[:, 0].max()) <= r1, (name, unit)
        assert c0 <= int(hit[:, 1].min()) and int(hit[:, 1].max()) <= c1, (name, unit)


def test_resnet50_heat_map(tmp_path: Path) -> None:
    """Random init, CPU, two noise images at 64 px: a heat map inside layer4's RF, drawn with its box."""
    from rffsurgery.reports.plot import plot_erf

    result = erf("resnet50", ["layer3", "layer4"], images=2, input_size=64, batch=2)
    assert result.weights == "random init (seed 0)"
    layer4 = result["layer4"]
    assert layer4.node == "layer4.2.relu_2" and layer4.unit == (1, 1)
    assert layer4.heatmap.shape == (64, 64) and math.isclose(float(layer4.heatmap.sum()), 1.0)
    assert result["layer3"].squares[0.5] <= layer4.squares[0.5]
    assert plot_erf(result, layer4, tmp_path / "erf.png").stat().st_size > 10_000


def test_unit_out_of_range_is_a_user_error() -> None:
    with pytest.raises(InvalidArgument, match="not a position"):
        erf(box_stack(1, 3), input_size=(1, 9, 9), unit=(9, 0))


class _ChannelsLast(nn.Module):
    """conv → NHWC (permute) → Linear over channels (ConvNeXt's MLP) → back to NCHW: the layout changes, the RF
    does not.  (Not a LayerNorm: its outputs sum to a constant over channels, so the summed gradient is zero.)"""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        return self.norm(y).permute(0, 3, 1, 2)


def test_units_of_a_channels_last_node_are_indexed_by_axis() -> None:
    from rffsurgery import analyze

    plan = analyze(_ChannelsLast(), (3, 12, 10))
    nhwc = plan["norm"]
    assert nhwc.shape == (12, 10, 4) and nhwc.grid == (12, 10) and nhwc.dims == (1, 2)
    assert plan["conv"].grid == (12, 10) and plan["conv"].dims == (2, 3)
    torch.manual_seed(0)
    model = _ChannelsLast()
    a = erf(model, ["conv"], unit=(3, 7), input_size=(3, 12, 10), images=2)
    b = erf(model, ["norm"], unit=(3, 7), input_size=(3, 12, 10), images=2)
    assert a.nodes[0].interval == b.nodes[0].interval == ((2, 4), (6, 8))
    # the gradient truth: the unit at row 3, col 7 reads rows 2…4, cols 6…8 in both layouts
    for node in (a.nodes[0], b.nodes[0]):
        support = (node.heatmap > 0).nonzero()
        assert support[:, 0].min() == 2 and support[:, 0].max() == 4
        assert support[:, 1].min() == 6 and support[:, 1].max() == 8


def test_heat_map_picture_keeps_every_box_on_the_image(monkeypatch) -> None:
    """An RF and squares larger than the image: drawn clipped to it, their true size in the legend.

    Six 5×5 boxes read 25×25 pixels; on a 15×15 input unit (2, 2) reads rows and columns
    −10…14, and the square centred on it that holds 99 % is wider than the image too.
    """
    import rffsurgery.reports.plot as plot

    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path, *a, **k: figures.append(fig) or Path(path))
    result = erf(box_stack(6, 5), input_size=(1, 15, 15), images=1, unit=(2, 2))
    node = result.nodes[0]
    assert node.interval == ((-10, 14), (-10, 14)) and node.squares[0.99] > 15
    plot.plot_erf(result, node, "unused.png")
    ax = figures[0].axes[0]
    boxes = [p for p in ax.patches if p.get_label() and not p.get_label().startswith("_")]
    assert len(boxes) == 3  # the RF, the 50 % and the 99 % squares
    for patch in boxes:
        x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
        assert -0.5 <= x and -0.5 <= y and x + w <= 14.5 and y + h <= 14.5, patch.get_label()
    labels = [p.get_label() for p in boxes]
    assert "theoretical RF 25 (25x25 px, past the 15x15 image: drawn clipped)" in labels
    assert any(label.startswith(f"99% of the contribution: {node.squares[0.99]} px square (past the image")
               for label in labels), labels
