"""ONNX-only forms against onnxruntime's ground truth (``onnx_rf``): what no PyTorch model exports.

TensorFlow's 'SAME' padding as ``auto_pad`` SAME_UPPER/SAME_LOWER, ``ceil_mode`` pools,
asymmetric and explicit pads, channels-last (NHWC) inputs, ONNX Resize's coordinate
modes, transposed convolutions with asymmetric pads, 1-D and 3-D inputs, DepthToSpace.
Every unit of every checked node must read exactly the pixels onnxruntime says it reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from gradient_rf import assert_exact
from onnx_rf import model, oracle_cases, positive
from rffsurgery import analyze

pytest.importorskip("onnxruntime")


def conv(name: str, x: str, shape: tuple[int, ...], weights: dict, seed: int, op: str = "Conv", **attrs) -> object:
    """A convolution named (and outputting) ``name`` with positive weights and no bias."""
    weights[f"{name}.weight"] = positive(shape, seed)
    return helper.make_node(op, [x, f"{name}.weight"], [name], name=name, **attrs)


def node(op: str, inputs: list[str], name: str, **attrs) -> object:
    return helper.make_node(op, inputs, [name], name=name, **attrs)


def check(path: Path, names: list[str], file_shape: tuple[int, ...], spatial_dims: tuple[int, ...],
          border: str = "edges", input_size: tuple[int, ...] | None = None) -> None:
    plan = analyze(str(path), input_size)
    assert plan.complete, [(l.name, l.reason) for l in plan.unknown]
    cases = oracle_cases(plan, path, {n: n for n in names}, file_shape, spatial_dims, border)
    assert len(cases) > 10
    assert_exact(cases)


def test_tensorflow_same_padding(tmp_path: Path) -> None:
    """auto_pad SAME_UPPER (extra pad at the end) and SAME_LOWER (at the start), on odd and even sizes."""
    w: dict = {}
    nodes = [conv("c1", "x", (4, 2, 3, 3), w, 1, strides=[2, 2], auto_pad="SAME_UPPER"),
             conv("c2", "c1", (4, 4, 4, 2), w, 2, strides=[2, 1], auto_pad="SAME_LOWER"),
             node("MaxPool", ["c2"], "p", kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")]
    path = model(tmp_path / "same.onnx", nodes, (1, 2, 17, 12), ["c1", "c2", "p"], w)
    check(path, ["c1", "c2", "p"], (1, 2, 17, 12), (2, 3))


def test_ceil_mode_pools_and_asymmetric_dilated_pads(tmp_path: Path) -> None:
    w: dict = {}
    nodes = [node("MaxPool", ["x"], "p", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             node("AveragePool", ["p"], "a", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
             conv("c", "a", (3, 2, 3, 2), w, 3, dilations=[1, 2], pads=[0, 1, 2, 1])]
    path = model(tmp_path / "ceil.onnx", nodes, (1, 2, 16, 14), ["p", "a", "c"], w)
    check(path, ["p", "a", "c"], (1, 2, 16, 14), (2, 3), border="bound")


def test_channels_last_input(tmp_path: Path) -> None:
    """A TensorFlow export: NHWC input, Transpose to NCHW, the layers, Transpose back."""
    w: dict = {}
    nodes = [node("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2]),
             conv("c", "nchw", (4, 3, 3, 3), w, 4, strides=[2, 2], auto_pad="SAME_UPPER"),
             node("MaxPool", ["c"], "p", kernel_shape=[2, 2], strides=[2, 2]),
             node("Transpose", ["p"], "out", perm=[0, 2, 3, 1])]
    path = model(tmp_path / "nhwc.onnx", nodes, (1, 14, 11, 3), ["c", "out"], w)
    plan = analyze(str(path))
    assert plan.input_size == (3, 14, 11)  # channels first, whatever the file's layout
    assert plan["out"].dims == (1, 2) and plan["c"].dims == (2, 3)
    check(path, ["c", "out"], (1, 14, 11, 3), (1, 2))


@pytest.mark.parametrize("mode, coordinates, nearest, size", [
    ("nearest", "asymmetric", "floor", (12, 20)),
    ("nearest", "half_pixel", "round_prefer_floor", (3, 5)),
    ("nearest", "tf_half_pixel_for_nn", "floor", (9, 13)),
    ("linear", "half_pixel", "round_prefer_floor", (11, 16)),
    ("linear", "align_corners", "round_prefer_floor", (13, 7)),
    ("linear", "asymmetric", "floor", (12, 15)),
    ("cubic", "half_pixel", "round_prefer_floor", (12, 16)),
])
def test_resize_coordinate_modes(tmp_path: Path, mode: str, coordinates: str, nearest: str,
                                 size: tuple[int, int]) -> None:
    w: dict = {}
    sizes = np.array(size, dtype=np.int64)  # of the spatial axes only: the batch is the oracle's
    nodes = [conv("c", "x", (4, 2, 3, 3), w, 5, pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "", "sizes"], ["r"], name="r", mode=mode, axes=[2, 3],
                              coordinate_transformation_mode=coordinates, nearest_mode=nearest),
             conv("after", "r", (2, 4, 3, 3), w, 6)]
    path = model(tmp_path / "resize.onnx", nodes, (1, 2, 6, 8), ["r", "after"], {**w, "sizes": sizes}, opset=18)
    check(path, ["r", "after"], (1, 2, 6, 8), (2, 3), border="bound")


def test_resize_by_scales(tmp_path: Path) -> None:
    """Scales, not sizes: the output is floor(size·scale) and the sampling uses the scale itself."""
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], name="r", mode="linear"),
             helper.make_node("Resize", ["r", "", "down"], ["d"], name="d", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    scales = np.array([1, 1, 2.5, 1.5], dtype=np.float32)
    down = np.array([1, 1, 0.5, 0.75], dtype=np.float32)
    path = model(tmp_path / "scales.onnx", nodes, (1, 1, 6, 8), ["r", "d"], {"scales": scales, "down": down},
                 opset=13)
    check(path, ["r", "d"], (1, 1, 6, 8), (2, 3), border="bound")


def test_transposed_convolutions_with_asymmetric_pads(tmp_path: Path) -> None:
    w: dict = {}
    nodes = [conv("t", "x", (2, 3, 3, 3), w, 7, op="ConvTranspose", strides=[2, 2], pads=[0, 1, 1, 0],
                  output_padding=[1, 1]),
             conv("s", "t", (3, 2, 4, 4), w, 8, op="ConvTranspose", strides=[2, 2], auto_pad="SAME_UPPER"),
             conv("c", "s", (2, 2, 3, 3), w, 9, pads=[1, 1, 1, 1])]
    path = model(tmp_path / "transposed.onnx", nodes, (1, 2, 5, 6), ["t", "s", "c"], w)
    check(path, ["t", "s", "c"], (1, 2, 5, 6), (2, 3), border="within")


def test_one_and_three_dimensional_inputs(tmp_path: Path) -> None:
    w: dict = {}
    one = [conv("c", "x", (3, 2, 5), w, 10, strides=[2], auto_pad="SAME_UPPER"),
           node("MaxPool", ["c"], "p", kernel_shape=[3], strides=[2], ceil_mode=1)]
    path = model(tmp_path / "one.onnx", one, (1, 2, 41), ["c", "p"], w)
    check(path, ["c", "p"], (1, 2, 41), (2,))
    w = {}
    three = [conv("c", "x", (2, 1, 3, 3, 3), w, 11, strides=[1, 2, 2], pads=[1, 1, 1, 1, 1, 1]),
             node("AveragePool", ["c"], "p", kernel_shape=[2, 2, 2], strides=[2, 2, 2])]
    path = model(tmp_path / "three.onnx", three, (1, 1, 6, 8, 7), ["c", "p"], w)
    check(path, ["c", "p"], (1, 1, 6, 8, 7), (2, 3, 4))


def test_pad_depth_to_space_and_space_to_depth(tmp_path: Path) -> None:
    w: dict = {}
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 0], dtype=np.int64)  # H: 1 before, 2 after; W: 2 before
    nodes = [helper.make_node("Pad", ["x", "pads"], ["pad"], name="pad"),
             conv("c", "pad", (8, 2, 3, 3), w, 12),
             node("DepthToSpace", ["c"], "up", blocksize=2, mode="DCR"),
             node("SpaceToDepth", ["up"], "down", blocksize=2),
             conv("c2", "down", (2, 8, 3, 3), w, 13, pads=[1, 1, 1, 1])]
    path = model(tmp_path / "depth.onnx", nodes, (1, 2, 7, 6), ["pad", "c", "up", "down", "c2"], {**w, "pads": pads})
    check(path, ["c", "up", "down", "c2"], (1, 2, 7, 6), (2, 3), border="bound")


def test_nearest_indices_clamped_at_the_border_are_flagged(tmp_path: Path) -> None:
    """Rounding up past the last pixel reads the edge pixel (onnxruntime clamps): a note says so, as for replicate
    padding, since the periodic map reports such border units unclipped."""
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["r"], name="r", mode="nearest", axes=[2, 3],
                              coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="round_prefer_ceil")]
    path = model(tmp_path / "clamp.onnx", nodes, (1, 1, 6, 8), ["r"], {"sizes": np.array([9, 13], dtype=np.int64)},
                 opset=18)
    assert any("edge pixel" in note for note in analyze(str(path))["r"].notes)
