"""ONNX export, checked twice: ``onnx.checker`` on the file and onnxruntime against PyTorch.

The export uses PyTorch's TorchScript-based exporter (``dynamo=False``): the
torch.export-based default needs the ``onnxscript`` package, which rffsurgery does
not depend on.  The batch axis is exported as dynamic, and the comparison runs a
different batch size than the export did, so a file that only works for the
traced batch is caught.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["OnnxCheck", "export_onnx"]


@dataclass(frozen=True)
class OnnxCheck:
    """Where the model went and how far onnxruntime's output is from PyTorch's (eval mode)."""

    path: Path
    max_abs_diff: float
    max_abs_output: float
    ok: bool

    def __str__(self) -> str:
        verdict = "matches" if self.ok else "DOES NOT match"
        return (f"{self.path}: onnx.checker ok; onnxruntime {verdict} PyTorch "
                f"(max |diff| {self.max_abs_diff:.3g}, max |output| {self.max_abs_output:.3g})")


def export_onnx(model: nn.Module, input_size: tuple[int, ...], path: str | Path, *, opset: int = 17,
                batch: int = 3, rtol: float = 1e-4) -> OnnxCheck:
    """Export ``model`` (eval mode) for inputs ``(batch, *input_size)`` and verify the file.

    ``ok`` when every output differs from PyTorch's by at most ``rtol`` times the
    largest output magnitude (float32 kernels differ in summation order).
    """
    import onnx
    import onnxruntime

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        onnx.checker.check_model(str(path))
        x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(x)
    finally:
        model.train(was_training)
    if not isinstance(expected, torch.Tensor):
        raise TypeError(f"only models with one tensor output are compared, got {type(expected).__name__}")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    diff = float((torch.from_numpy(got) - expected).abs().max())
    scale = float(expected.abs().max())
    return OnnxCheck(path, diff, scale, diff <= rtol * max(scale, 1e-12))
