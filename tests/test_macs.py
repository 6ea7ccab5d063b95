"""Parameters and MACs per node against hand-computed values and published totals."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.analysis.macs import macs, node_costs
from rffsurgery.reports import rewrite as rewrite_report


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.stem(x))
        y = torch.matmul(x.flatten(2), x.flatten(2).transpose(1, 2))  # a function node: 64×64 Gram matrix
        return self.fc(self.pool(x).flatten(1)) + y.sum()


def test_macs_and_params_by_hand() -> None:
    costs = node_costs(analyze(Small(), (3, 224, 224)))
    assert costs.macs["stem"] == 112 * 112 * 64 * 3 * 49
    assert costs.params["stem"] == 64 * 3 * 49 + 64
    assert costs.macs["dw"] == 112 * 112 * 64 * 9 and costs.params["dw"] == 64 * 9
    assert costs.macs["fc"] == 64 * 10 and costs.params["fc"] == 64 * 10 + 10
    assert costs.macs["matmul"] == 64 * 64 * 112 * 112
    assert costs.total_macs == sum(costs.macs.values()) == macs(Small(), (3, 224, 224))[""]


def test_resnet50_matches_the_published_totals() -> None:
    """torchvision lists ResNet-50 at 25,557,032 parameters and 4.09 G(MAC)s at 224 px."""
    costs = node_costs(analyze("resnet50"))
    assert costs.total_params == 25_557_032
    assert costs.total_macs == pytest.approx(4.09e9, rel=0.005)
    assert costs.macs["conv1"] == 112 * 112 * 64 * 3 * 49


def test_one_counter_for_both_reports() -> None:
    assert rewrite_report.macs is macs


def test_table_json_and_csv_show_params_and_macs() -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["analyze", "resnet18"]).output
    header = next(line for line in table.splitlines() if line.startswith("node"))
    assert "params" in header and "MACs" in header
    conv1 = next(line for line in table.splitlines() if line.startswith("conv1 "))
    assert "9,408" in conv1 and "118M" in conv1
    assert "total: 11,689,512 parameters, 1.814G MACs" in table
    data = json.loads(runner.invoke(main, ["analyze", "resnet18", "--json"]).output)
    node = next(n for n in data["nodes"] if n["name"] == "conv1")
    assert (node["n_params"], node["macs"]) == (9408, 118013952)
    assert data["total_params"] == 11_689_512 and data["total_macs"] == sum(n["macs"] or 0 for n in data["nodes"])
    csv = runner.invoke(main, ["analyze", "resnet18", "--csv"]).output.splitlines()
    assert "n_params" in csv[0].split(",") and "outer_extent_0" in csv[0].split(",")


def test_recurrent_layers_are_counted_from_their_equations():
    """PyTorch's documented equations: an LSTM step computes 4 gates, each W_i·x (h×in) + W_h·h (h×h);
    a GRU 3; a bidirectional layer twice; layer 2 reads both directions (2h)."""
    from rffsurgery.geometry.rules.recurrence import recurrence_macs

    lstm = nn.LSTM(3, 5, batch_first=True)
    assert recurrence_macs(lstm, (torch.empty(2, 7, 3),), {}) == 2 * 7 * 4 * (5 * 3 + 5 * 5)
    gru = nn.GRU(4, 6, num_layers=2, bidirectional=True)
    per_step = 2 * 3 * (6 * 4 + 6 * 6) + 2 * 3 * (6 * 12 + 6 * 6)
    assert recurrence_macs(gru, (torch.empty(9, 4),), {}) == 9 * per_step
    projected = nn.LSTM(3, 8, proj_size=2)  # gates read the projected state (2); the projection is 8 → 2
    assert recurrence_macs(projected, (torch.empty(5, 1, 3),), {}) == 5 * (4 * (8 * 3 + 8 * 2) + 8 * 2)


class _RowLSTM(nn.Module):
    """A conv stem, then an LSTM over the columns of every row (as in sequencer2d)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.rnn = nn.LSTM(8, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)  # N, H, W, C
        n, h, w, c = y.shape
        out, _ = self.rnn(y.reshape(n * h, w, c))
        return out.reshape(n, h, w, -1)


def test_the_mac_column_never_steps_a_recurrence(monkeypatch):
    plan = analyze(_RowLSTM(), (3, 6, 10))

    def refuse(*args, **kwargs):
        raise AssertionError("the LSTM ran")

    monkeypatch.setattr(nn.LSTM, "forward", refuse)
    costs = node_costs(plan)
    assert costs.macs["rnn"] == 6 * 10 * 4 * (4 * 8 + 4 * 4)  # 6 rows × 10 steps, 4 gates
    assert costs.macs["conv"] == 6 * 10 * 8 * 3 * 9
