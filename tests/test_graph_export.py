"""``analyze --graph``: the analysed graph as GraphML / node-link JSON that networkx reads back unchanged."""

from __future__ import annotations

import json
from fractions import Fraction

import networkx as nx
import pytest
from click.testing import CliRunner
from torch import nn

from rffsurgery import analyze, tag
from rffsurgery.analysis.macs import node_costs
from rffsurgery.cli import main


@pytest.fixture(scope="module")
def resnet18():
    return analyze("resnet18", 64)


def _text(values) -> str:
    return ",".join(str(v) if not isinstance(v, Fraction) or v.denominator != 1 else str(int(v)) for v in values)


def test_graphml_round_trips_through_networkx(tmp_path, resnet18) -> None:
    path = tmp_path / "r18.graphml"
    result = CliRunner().invoke(main, ["analyze", "resnet18", "--input-size", "64", "--graph", str(path)])
    assert result.exit_code == 0, result.output
    graph = nx.read_graphml(path)
    costs, tags = node_costs(resnet18), {t.name for t in tag(resnet18)}
    assert set(graph.nodes) == set(resnet18.layers)
    assert set(graph.edges) == {(i, layer.name) for layer in resnet18 for i in layer.inputs}
    assert graph.graph["model"] == "resnet18" and graph.graph["schema"] == "rffsurgery.analysis-graph"
    for layer in resnet18:
        attrs = graph.nodes[layer.name]
        assert attrs["status"] == layer.status and attrs["op"] == layer.op
        assert attrs["params"] == costs.params.get(layer.name, 0)  # read back as int
        assert attrs["tagged"] is (layer.name in tags)  # read back as bool
        if layer.status == "ok":
            assert attrs["rf"] == _text(layer.rf)
            assert attrs["stride"] == _text(layer.stride) and attrs["padding"] == _text(layer.padding)
    assert graph.nodes["layer4.1.relu_1"]["rf"] == _text(resnet18["layer4"].rf)
    assert graph.nodes["fc"]["rf"] == "global,global"


def test_node_link_json_keeps_lists_and_fractions(tmp_path) -> None:
    upsampler = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3))
    plan = analyze(upsampler, (3, 16, 16))
    path = tmp_path / "unet.json"
    from rffsurgery.reports.graph import write_graph

    write_graph(plan, path)
    graph = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
    assert set(graph.nodes) == set(plan.layers)
    fractional = [l for l in plan if l.status == "ok" and any(s.denominator != 1 for s in l.stride)]
    assert fractional, "after the upsampling the stride is 1/2"
    for layer in fractional:
        want = [str(s) if s.denominator != 1 else int(s) for s in layer.stride]
        assert graph.nodes[layer.name]["stride"] == want
    assert graph.nodes[plan.output().name]["shape"] == list(plan.output().shape)


def test_bad_graph_paths_are_refused_before_the_analysis(tmp_path) -> None:
    run = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--graph", str(tmp_path / "g.xml")])
    assert run.exit_code == 2 and ".graphml" in run.output and "Traceback" not in run.output
    existing = tmp_path / "g.graphml"
    existing.write_text("mine")
    run = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--graph", str(existing)])
    assert run.exit_code == 1 and "--force" in run.output and existing.read_text() == "mine"
    run = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--graph", str(existing), "--plot", str(existing)])
    assert run.exit_code == 2 and "name the same file" in run.output
    run = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--graph", str(existing), "--force"])
    assert run.exit_code == 0 and nx.read_graphml(existing).number_of_nodes() > 10
