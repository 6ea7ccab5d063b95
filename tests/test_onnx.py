"""``analyze FILE.onnx``: exact against the PyTorch analysis of the exported model, and every output of analyze.

A model exported by PyTorch must give, on every convolution, pooling and resampling
layer, the same RF, stride, padding and status (global, global context) as the analysis
of the model itself, under the same node name.  The files are exported inside the tests
with the legacy exporter (``dynamo=False``, which needs no onnxscript); torch's default
dynamo exporter is covered too where onnxscript is installed.  Forms that only ONNX files
have are checked against onnxruntime in ``test_onnx_oracle``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper
from torch import nn

from onnx_rf import model as onnx_model, positive
from rffsurgery import FreezePlan, UnknownOpError, analyze, build_freeze_plan
from rffsurgery.analysis.result import geometry_differences
from rffsurgery.cli import main
from rffsurgery.models.zoo import resolve

def export(name: str, path: Path, size: tuple[int, ...], dynamo: bool = False, **kwargs) -> Path:
    """The zoo model (random weights) exported to ``path`` at batch 1."""
    module = resolve(name).build("cpu").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, *size),), str(path), input_names=["input"], dynamo=dynamo,
                          **({} if dynamo else {"opset_version": 17}), **kwargs)
    return path


def assert_same_geometry(reference, plan) -> int:
    """Every conv/pool/resampling node of ``reference`` is in ``plan`` under its name, with the same geometry."""
    compared, differ = geometry_differences(reference, plan)
    assert not differ, f"{len(differ)}/{compared} layers differ:\n" + "\n".join(differ[:10])
    return compared


@pytest.mark.parametrize("name, size, minimum", [
    ("resnet18", (3, 64, 64), 20),
    ("mobilenet_v3_small", (3, 64, 64), 50),
    ("efficientnet_b0", (3, 64, 64), 80),
    ("timm:convnext_atto", (3, 64, 64), 20),
    ("deeplabv3_mobilenet_v3_large", (3, 64, 64), 60),  # atrous convs, ASPP pooling, two bilinear upsamplings
    ("timm:tf_mobilenetv3_small_minimal_100", (3, 65, 63), 30),  # TF 'SAME' padding computed from the size
])
def test_exported_models_have_the_pytorch_geometry(tmp_path: Path, name: str, size: tuple[int, ...],
                                                    minimum: int) -> None:
    path = export(name, tmp_path / "model.onnx", size)
    plan = analyze(str(path))
    assert plan.input_size == size and plan.capture == "onnx" and plan.complete
    assert assert_same_geometry(analyze(name, size), plan) >= minimum


def test_dynamo_exports_carry_module_paths(tmp_path: Path) -> None:
    """torch's default exporter (opset 18+, names in metadata, weights in a .data file)."""
    pytest.importorskip("onnxscript")
    path = export("resnet18", tmp_path / "r18.onnx", (3, 64, 64), dynamo=True)
    plan = analyze(str(path))
    assert assert_same_geometry(analyze("resnet18", (3, 64, 64)), plan) == 22
    assert "layer1.0.conv1.weight" in plan["layer1.0.conv1"].params


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    """rffsurgery's base CNN exported with its weights in an external-data file."""
    folder = tmp_path_factory.mktemp("cnn")
    path = export("rff-base-cnn", folder / "cnn.onnx", (3, 32, 32))
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="cnn.onnx.data", size_threshold=1024)
    return path


def test_analyze_file_matches_the_model_and_names_initializers(cnn: Path) -> None:
    plan = analyze(str(cnn))
    assert assert_same_geometry(analyze("rff-base-cnn"), plan) == 8
    names = {t.name for t in onnx.load(str(cnn), load_external_data=False).graph.initializer}
    frozen = build_freeze_plan(plan)
    assert frozen.parameter_names and set(frozen.parameter_names) <= names
    assert frozen.capture == "onnx" and plan.to_dict()["capture"] == "onnx"


def test_cli_outputs_for_an_onnx_file(cnn: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["analyze", str(cnn), "--tags"])
    assert table.exit_code == 0, table.output
    assert "features.6" in table.output and "Conv" in table.output and "* 2 RF-expanding" in table.output
    data = json.loads(runner.invoke(main, ["analyze", str(cnn), "--json"]).output)
    assert data["capture"] == "onnx" and data["complete"] and data["total_params"] > 0
    conv = next(n for n in data["nodes"] if n["name"] == "features.6")
    assert conv["n_params"] > 0 and conv["maps"] and conv["grid"]
    csv_out = runner.invoke(main, ["analyze", str(cnn), "--csv", "--main"])
    assert csv_out.exit_code == 0 and "features.6" in csv_out.output
    unit = runner.invoke(main, ["analyze", str(cnn), "--node", "features.6", "--unit", "2,3"])
    assert unit.exit_code == 0 and "rows" in unit.output
    out = tmp_path / "plan.json"
    made = runner.invoke(main, ["analyze", str(cnn), "--export-plan", str(out), "--graph", str(tmp_path / "g.graphml")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "g.graphml").read_text().count("<node ") > 10
    checked = runner.invoke(main, ["plan", "check", str(out), str(cnn)])
    assert checked.exit_code == 0 and "ok:" in checked.output, checked.output
    wrong = runner.invoke(main, ["plan", "check", str(out), "rff-base-cnn"])
    assert wrong.exit_code == 1 and "made from an ONNX file" in wrong.output
    assert FreezePlan.load(out).capture == "onnx"


def test_overlay_and_plot_for_an_onnx_file(cnn: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(tmp_path / "in.png")
    result = CliRunner().invoke(main, ["analyze", str(cnn), "--node", "features.6", "--unit", "1,1", "--overlay",
                                       str(tmp_path / "in.png"), "--out-image", str(tmp_path / "o.png"),
                                       "--plot", str(tmp_path / "rf.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.png").stat().st_size > 0 and (tmp_path / "rf.png").stat().st_size > 0


def test_weights_are_never_read(cnn: Path, tmp_path: Path) -> None:
    """Without its external-data file the analysis is the same: only initializer shapes are used."""
    alone = tmp_path / "cnn.onnx"
    alone.write_bytes(cnn.read_bytes())
    assert assert_same_geometry(analyze(str(cnn)), analyze(str(alone))) == 8


def test_a_needed_value_in_a_missing_data_file_is_one_clear_error(tmp_path: Path) -> None:
    weights = {"w": positive((4, 2, 3, 3), 0), "shape": np.array([1, -1], dtype=np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c"), helper.make_node("Reshape", ["c", "shape"], ["r"], name="r")]
    path = onnx_model(tmp_path / "ext.onnx", nodes, (1, 2, 8, 8), ["r"], weights)
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save_model(proto, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert analyze(str(path))["r"].rf == (3, 3)  # the flattened conv: each element keeps its RF
    (tmp_path / "ext.data").unlink()
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'shape' is stored in the external-data file ext.data, which is missing" in result.output


class Small(nn.Module):
    """Any input size: convolutions, pooling, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                                      nn.Conv2d(8, 8, 3, padding=2, dilation=2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_dynamic_dims_take_the_input_size(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Small().eval(), (torch.randn(1, 3, 32, 32),), str(path), input_names=["input"],
                          dynamo=False, dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}})
    runner = CliRunner()
    missing = runner.invoke(main, ["analyze", str(path)])
    assert missing.exit_code == 1 and "dynamic dims" in missing.output and "--input-size" in missing.output
    plan = analyze(str(path), (3, 48, 40))
    assert plan.input_size == (3, 48, 40) and plan.shape_specialised and plan.complete
    assert assert_same_geometry(analyze(Small(), (3, 48, 40)), plan) == 4
    fixed = runner.invoke(main, ["analyze", str(export("rff-base-cnn", tmp_path / "fixed.onnx", (3, 32, 32))),
                                 "--input-size", "64"])
    assert fixed.exit_code == 1 and "fixes its input at 3x32x32" in fixed.output


def test_an_unsupported_op_is_reported_by_name_with_the_partial_result(tmp_path: Path) -> None:
    weights = {"w1": positive((4, 2, 3, 3), 1), "w2": positive((4, 4, 3, 3), 2)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="a"),
             helper.make_node("Frobnicate", ["a"], ["f"], name="f", domain="com.example"),
             helper.make_node("Conv", ["f", "w2"], ["b"], name="b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 9, 9])],
                              [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(v, k) for k, v in weights.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    plan = analyze(str(tmp_path / "custom.onnx"))
    assert plan["a"].status == "ok" and plan["a"].rf == (3, 3)
    assert [l.name for l in plan.unknown] == ["f"] and "ONNX com.example.Frobnicate" in plan["f"].reason
    assert plan["b"].reason.startswith("after f")
    with pytest.raises(UnknownOpError, match="Frobnicate"):
        analyze(str(tmp_path / "custom.onnx"), strict=True)


def test_group_norm_written_as_instance_norm_keeps_the_local_geometry(tmp_path: Path) -> None:
    """Exporters before opset 18 write GroupNorm as Reshape(N, G, -1) → InstanceNormalization → Reshape:
    converted back to one group norm, the layers after it keep their local RF (plus global context)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3))
    path = tmp_path / "gn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, 3, 20, 20),), str(path), dynamo=False, opset_version=17)
    assert "InstanceNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    plan = analyze(str(path))
    assert assert_same_geometry(analyze(model, (3, 20, 20)), plan) == 3
    assert plan["2"].global_context and plan["2"].rf == (4, 4)
