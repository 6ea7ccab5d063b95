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

from .errors import InvalidArgument, MissingDependency
from .files import atomic_output, prepare_output
from .models.given import require_module

__all__ = ["OnnxCheck", "export_onnx", "require_onnx"]


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


def require_onnx() -> None:
    """Raise :class:`MissingDependency` unless onnx and onnxruntime can be imported (before any work is done)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"--onnx needs onnx and onnxruntime ({exc.name} is not installed): "
                                "pip install 'rffsurgery[onnx]'") from None


def export_onnx(model: nn.Module, input_size: tuple[int, ...], path: str | Path, *, opset: int = 17,
                batch: int = 3, rtol: float = 1e-4, force: bool = False) -> OnnxCheck:
    """Export ``model`` (eval mode) for inputs ``(batch, *input_size)`` and verify the file.

    ``ok`` when every output differs from PyTorch's by at most ``rtol`` times the
    largest output magnitude (float32 kernels differ in summation order).  A model
    may return one tensor or a tuple/list of tensors.  The file appears only once
    ``onnx.checker`` has passed and the outputs were compared (written atomically);
    an existing file is replaced only with ``force``.
    """
    model = require_module(model, "export_onnx()")
    require_onnx()
    import onnx
    import onnxruntime

    path = prepare_output(path, force=force, option="--onnx")
    example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(1))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _outputs(model(x))
        names = ["output"] if len(expected) == 1 else [f"output{i}" for i in range(len(expected))]
        with atomic_output(path, suffix=".onnx") as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
                torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=names,
                                  dynamic_axes={n: {0: "batch"} for n in ["input", *names]})
            onnx.checker.check_model(str(tmp))
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": x.numpy()})
    finally:
        model.train(was_training)
    diff = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
    scale = max(float(e.abs().max()) for e in expected)
    return OnnxCheck(path, diff, scale, len(got) == len(expected) and diff <= rtol * max(scale, 1e-12))


def _outputs(value: object) -> list[torch.Tensor]:
    """The model's output as a flat list of tensors; :class:`InvalidArgument` for anything else."""
    tensors = [value] if isinstance(value, torch.Tensor) else list(value) if isinstance(value, (tuple, list)) else []
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise InvalidArgument(f"ONNX export compares tensor outputs; the model returns {type(value).__name__} "
                              "(a tensor or a tuple/list of tensors is needed)")
    return tensors
