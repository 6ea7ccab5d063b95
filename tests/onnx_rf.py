"""Ground truth for receptive fields of ONNX files, from onnxruntime: which input pixels move which outputs.

The gradient oracle (``gradient_rf``) needs a PyTorch model; an ONNX file has none,
and converting it with our own front end would check the front end against itself.
So the file runs in onnxruntime, once on a positive input and once per input pixel
with that pixel raised by a large amount (all channels, one batch).  With positive
weights and zero biases nothing cancels: an output unit changes exactly when the raised
pixel lies in its receptive field — a max-pool passes the raised pixel on when it is in
the window, an average or a linear interpolation with a non-zero weight too.  The span of
the pixels that move a unit, per axis, is its receptive field as onnxruntime computes it.
None of the engine's formulas are used.

Test files are built with ``onnx.helper`` (:func:`model`), with a dynamic batch so every
perturbed input runs in one call, and every checked value is a graph output.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from gradient_rf import Border, Case
from rffsurgery import Plan
from rffsurgery.analysis import select_unit

__all__ = ["model", "oracle_cases", "positive", "value"]

RAISE = 100.0


def positive(shape: Sequence[int], seed: int) -> np.ndarray:
    """Weights in [0.5, 1] / fan-in: positive, and of a size that keeps activations near 1."""
    gen = np.random.default_rng(seed)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (gen.uniform(0.5, 1.0, size=shape) / fan_in).astype(np.float32)


def value(name: str, shape: Sequence[int] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model(path: Path, nodes: list, input_shape: Sequence[int | str], outputs: Sequence[str],
          initializers: dict[str, np.ndarray] | None = None, opset: int = 17) -> Path:
    """An ONNX file: input ``x`` of ``input_shape`` (batch ``"N"``), the given nodes, and ``outputs`` as graph outputs."""
    graph = helper.make_graph(
        nodes, path.stem, [value("x", ["N", *input_shape[1:]])], [value(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


def _supports(path: Path, file_shape: Sequence[int], spatial_dims: Sequence[int], outputs: Sequence[str]
              ) -> dict[str, np.ndarray]:
    """Per output: a boolean array (pixel, *output shape without batch): does raising that pixel move that value?"""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    base = np.random.default_rng(0).uniform(0.5, 1.0, size=(1, *file_shape[1:])).astype(np.float32)
    pixels = list(itertools.product(*(range(file_shape[d]) for d in spatial_dims)))
    batch = np.repeat(base, len(pixels) + 1, axis=0)
    for k, pixel in enumerate(pixels, start=1):
        index = [k] + [slice(None)] * (len(file_shape) - 1)
        for d, p in zip(spatial_dims, pixel):
            index[d] = p
        batch[tuple(index)] += RAISE
    results = session.run(list(outputs), {"x": batch})
    out = {}
    for name, result in zip(outputs, results):
        moved = np.abs(result[1:] - result[:1]) > 1e-3 * (1 + np.abs(result[:1]))
        out[name] = moved.reshape(len(pixels), *result.shape[1:])
    return out


def oracle_cases(plan: Plan, path: Path, checked: dict[str, str], file_shape: Sequence[int],
                 spatial_dims: Sequence[int], border: Border = "edges") -> list[Case]:
    """Engine versus onnxruntime for every unit of each checked node (``{node name: ONNX output name}``).

    ``spatial_dims`` are the input's spatial dims in the file's layout (``(1, 2)`` for NHWC);
    ``border`` says how units that may read padding are judged (:class:`gradient_rf.Case`).
    """
    supports = _supports(path, file_shape, spatial_dims, list(checked.values()))
    extent = tuple(file_shape[d] for d in spatial_dims)
    pixels = np.array(list(itertools.product(*(range(n) for n in extent))))
    cases = []
    for node, output in checked.items():
        layer = plan[node]
        moved = supports[output]  # (pixel, *output dims without batch)
        grid = [range(n) for n in layer.grid]
        for unit in itertools.product(*grid):
            # the pixel dim stands where the batch is: select_unit keeps it whole
            hit = select_unit(torch.from_numpy(moved), layer, unit).reshape(len(pixels), -1).any(dim=1).numpy()
            got = []
            for axis in range(len(extent)):
                where = pixels[hit, axis]
                got.append((int(where.min()), int(where.max())) if len(where) else None)
            engine = tuple(a.interval(u) for a, u in zip(layer.axes, unit))
            cases.append(Case(node, unit, "onnxruntime", engine, tuple(got), extent, border))
    return cases
