"""Parameters and MACs per node against hand-computed values and published totals."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.macs import macs, node_costs
from rffsurgery.surgery import report as rewrite_report


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
