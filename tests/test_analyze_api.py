"""The analyze API and CLI surface: names, formats, errors, unknown ops, global context."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rffsurgery import ModelNotFound, UnknownOpError, analyze
from rffsurgery.analysis import parse_input_size
from rffsurgery.cli import main
from rffsurgery.trace import TraceError
from rffsurgery.models.zoo import resolve


class Flips(nn.Module):
    """torch.flip reverses an axis: there is no rule for it, so it must be reported, not guessed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.b(torch.flip(self.a(x), dims=(2,)))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.inner = Gate()

    def forward(self, x):
        return self.inner(x)


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_unknown_op_is_reported_by_name_and_taints_downstream():
    plan = analyze(Flips(), 16)
    assert plan["a"].status == "ok" and plan["a"].rf == (3, 3)
    assert plan["flip"].status == "unknown" and "flip" in plan["flip"].reason
    assert plan["b"].status == "unknown" and plan["b"].reason.startswith("after flip")
    assert [l.name for l in plan.unknown] == ["flip"] and not plan.complete
    with pytest.raises(UnknownOpError, match="flip"):
        analyze(Flips(), 16, strict=True)


def test_untraceable_model_names_the_module_and_leaf_fixes_it():
    with pytest.raises(TraceError, match=r"(?s)module 'inner' \(Gate\).*leaf_modules=\[Gate\].*--capture export"):
        analyze(Branchy(), 16, capture="fx")
    plan = analyze(Branchy(), 16, leaf_modules=[Gate], capture="fx")  # traced, but Gate has no geometry rule
    assert plan["inner"].status == "unknown" and "Gate" in plan["inner"].reason


def test_squeeze_excitation_keeps_local_rf_and_flags_global_context():
    plan = analyze("efficientnet_b0")
    # the first MBConv: depthwise conv (block.0), then its SE gate x * sigmoid(fc2(silu(fc1(avgpool(x)))))
    local = plan["features.1.0.block.0.2"]
    gated = plan["features.1.0.block.1.mul"]
    assert gated.global_context and not local.global_context
    assert gated.axes == local.axes
    assert plan["features.1.0.block.1.avgpool"].status == "global"
    # once mixed in, global context flows on to everything downstream
    assert plan["features.2.0.block.1.2"].global_context


def test_module_paths_alias_their_output_node():
    plan = analyze("resnet18")
    assert plan["layer4"].name == "layer4.1.relu_1" and "layer4" in plan
    with pytest.raises(KeyError, match="did you mean"):
        plan["layer4.1.conv3"]


def test_non_square_kernels_report_h_and_w():
    plan = analyze("inception_v3")
    h, w = plan["Mixed_6b.branch7x7_2.conv"].rf  # a 1x7 conv: wider than tall relative to its input
    hi, wi = plan["Mixed_6b.branch7x7_1.conv"].rf
    assert (h - hi, w - wi) == (0, 6 * 16)  # 6 extra columns at stride 16


@pytest.mark.parametrize("text, size", [(None, (3, 224, 224)), (64, (3, 64, 64)), ("3,32,32", (3, 32, 32)),
                                         ("224x192", (3, 224, 192)), ((1, 100), (1, 100))])
def test_parse_input_size(text, size):
    assert parse_input_size(text) == size


def test_parse_input_size_rejects_garbage():
    with pytest.raises(ValueError, match="integers"):
        parse_input_size("big")


def test_zoo_resolution_forms(tmp_path):
    assert resolve("resnet50").source == "torchvision"
    assert resolve("timm:resnet50").source == "timm"
    assert resolve("resnet50d").source == "timm"  # not in torchvision
    assert resolve("rff-base-cnn").input_size == (3, 32, 32)
    assert resolve("inception_v3").input_size == (3, 299, 299)
    assert resolve("torch.nn:Identity").source == "user"
    path = tmp_path / "mine.py"
    path.write_text("import torch.nn as nn\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2))\n")
    plan = analyze(f"{path}:net", 32)
    assert plan["1"].rf == (6, 6) and plan["1"].stride == (2, 2)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(ModelNotFound, match="resnet50"):
        resolve("resnet5O")
    with pytest.raises(ModelNotFound, match="no callable"):
        resolve("torch.nn:NoSuchThing")


def test_zoo_models_are_built_without_memory():
    model = resolve("resnet50").build("meta")
    assert all(p.device.type == "meta" for p in model.parameters())


def test_cli_formats():
    runner = CliRunner()
    table = runner.invoke(main, ["analyze", "vgg16"])
    assert table.exit_code == 0
    row = next(line for line in table.output.splitlines() if line.startswith("features.30"))
    assert row.split()[3:6] == ["212", "32", "90"] and "end of features" in row
    as_json = json.loads(runner.invoke(main, ["analyze", "vgg16", "--json"]).output)
    node = next(n for n in as_json["nodes"] if n["name"] == "features.30")
    assert node["rf"] == [212, 212] and node["stride"] == [32, 32] and node["padding"] == [90, 90]
    rows = list(csv.DictReader(io.StringIO(runner.invoke(main, ["analyze", "vgg16", "--csv"]).output)))
    assert {r["name"] for r in rows} >= {"x", "features.30", "classifier.6"}
    every = runner.invoke(main, ["analyze", "vgg16", "--all"]).output
    assert "features.1 " in every and "features.1 " not in table.output  # ReLU only with --all


def test_cli_errors_are_one_line_with_exit_code_1():
    result = CliRunner().invoke(main, ["analyze", "resnet5O"])
    assert result.exit_code == 1 and result.output.startswith("error: unknown model")
    result = CliRunner().invoke(main, ["analyze", "resnet18", "--input-size", "huge"])
    assert result.exit_code == 1 and "integers" in result.output


def test_upsampling_stride_below_one_is_exact():
    up = analyze(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 4, 3, padding=1)), 16)
    assert up["1"].stride == (0.5, 0.5) and up["1"].rf == (2, 2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3, padding=1))
    plan = analyze(net, 16)
    last = plan["2"]
    assert last.stride == (1, 1)  # 2 x 1/2, but even and odd units read differently:
    # unit u reads conv0 outputs floor((u-1)/2)..floor((u+1)/2), each reading 2v-1..2v+1
    for u in range(6):
        lo, hi = (u - 1) // 2, (u + 1) // 2
        assert last.interval((u, u))[0] == (2 * lo - 1, 2 * hi + 1)


class TwoStrides(nn.Module):
    """Two branches reach 4x4 at strides 4 and 2: adding them has no single stride."""

    def __init__(self):
        super().__init__()
        self.coarse = nn.AvgPool2d(4)
        self.fine = nn.AvgPool2d(2)

    def forward(self, x):
        return self.coarse(x) + self.fine(x)[:, :, :4, :4]


class OffCentre(nn.Module):
    """Same stride, but one branch is padded on one side only: the union is exact, the shift is reported."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Sequential(nn.ZeroPad2d((2, 0, 2, 0)), nn.Conv2d(3, 3, 3))

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_misaligned_branches_are_reported_not_guessed():
    plan = analyze(TwoStrides(), 16)
    assert plan["add"].status == "misaligned" and "strides" in plan["add"].reason
    plan = analyze(OffCentre(), 16)
    add = plan["add"]
    assert add.status == "ok" and any("centres differ" in n for n in add.notes)
    # branch a reads u-1..u+1, branch b reads u-2..u: the union is u-2..u+1
    assert add.interval((5, 5)) == ((3, 6), (3, 6))


class Tiles(nn.Module):
    def forward(self, x):
        return x.repeat(1, 1, 2, 2)


class GroupStd(nn.Module):
    """The *_evos pattern: a per-image statistic expanded back over the map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y + y.std((2, 3), keepdim=True).expand(y.shape)


class Masked(nn.Module):
    """An optional input defaulting to None must be traced as None, not followed as a tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x, mask=None):
        x = self.conv(x)
        if mask is not None:
            x = x * mask.view(1, 1, 1, -1)
        return x


def test_repeat_and_expand_have_real_shapes_and_honest_geometry():
    tiled = analyze(Tiles(), 8)["repeat"]
    assert tiled.shape == (3, 16, 16) and tiled.status == "unknown" and "tiling" in tiled.reason
    plan = analyze(GroupStd(), 8)
    assert plan["expand"].shape == (4, 8, 8) and plan["expand"].status == "global"
    assert plan["add"].rf == (3, 3) and plan["add"].global_context


def test_none_default_inputs_and_declared_sizes():
    assert analyze(Masked(), 8)["conv"].rf == (3, 3)
    # vit_h_14's default weights use 518 px, but the model built without them is a 224 px model
    assert analyze("vit_h_14").input_size == (3, 224, 224)


def test_functional_weight_layers_have_their_parameters():
    """A conv written as F.conv2d(x, self.weight) is a weight layer too: tagged, counted and frozen like a module."""

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
            self.head = nn.Conv2d(4, 4, 3, stride=2)

        def forward(self, x):
            return self.head(torch.nn.functional.conv2d(x, self.weight, stride=2))

    from rffsurgery.reports.table import to_dict
    from rffsurgery.tags import is_weight_layer

    plan = analyze(Functional(), 32)
    assert plan["conv2d"].params == ("weight",) and is_weight_layer(plan["conv2d"])
    assert next(n for n in to_dict(plan)["nodes"] if n["name"] == "conv2d")["n_params"] == 108
