"""One entry point for every way of capturing a graph: ``capture(model, …, how="auto")``.

* an :class:`~rffsurgery.models.onnx_file.OnnxModel` (an ONNX file) → its own graph (:mod:`.onnx`);
* ``how="fx"`` → ``torch.fx`` symbolic tracing (:mod:`.tracer`), which needs no real
  values and runs on the meta device;
* ``how="export"`` → ``torch.export.draft_export`` (:mod:`.torch_export`), which runs the
  model once on an example input and records the branches that input takes;
* ``how="auto"`` (the default) → fx, and torch.export when fx cannot trace the model
  (its Python branches on tensor values, iterates over a tensor …).  fx comes first
  because its graph holds for every input of the size, torch.export's only for inputs
  taking the same branches.

The ONNX front end imports ``onnx`` (about a second), so it is imported only when an ONNX file is analysed.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import InvalidArgument
from ..models.onnx_file import OnnxModel
from .torch_export import capture_export
from .tracer import Traced, TraceError, trace

__all__ = ["CAPTURES", "capture"]

CAPTURES = ("auto", "fx", "export")


def capture(model: nn.Module, leaf_modules: Iterable[type] = (), autowrap_functions: Iterable[Callable] = (),
            input_shape: tuple[int, ...] | None = None, how: str = "auto",
            example: torch.Tensor | None = None) -> Traced:
    """The graph of ``model`` for inputs of ``input_shape`` (batch first), captured as ``how`` says (module docstring).

    ``example`` is torch.export's example input (default: seeded standard normal values).
    """
    if how not in CAPTURES:
        raise InvalidArgument(f"unknown capture {how!r}; choose one of {', '.join(CAPTURES)}")
    if isinstance(model, OnnxModel):
        if how == "export" or example is not None:
            raise InvalidArgument("an ONNX file is analysed from its own graph: --capture export and example inputs "
                                  "apply to PyTorch models")
        from .onnx import capture_onnx

        if input_shape is None:
            raise InvalidArgument("an ONNX graph is converted for one input size: give input_shape")
        return capture_onnx(model, input_shape)
    if how == "export":
        return capture_export(model, _shape(input_shape, example), example)
    try:
        return trace(model, leaf_modules, autowrap_functions, input_shape)
    except TraceError as exc:
        if how == "fx" or input_shape is None:
            raise TraceError(f"{exc} Or capture it with torch.export (--capture export, for the branch the "
                             "example input takes).") from exc
        try:
            return capture_export(model, _shape(input_shape, example), example)
        except TraceError as export_exc:
            if type(export_exc) is not TraceError:  # the model needs real weights: the caller can provide them
                raise
            raise TraceError(f"{exc} {export_exc}") from exc


def _shape(input_shape: tuple[int, ...] | None, example: torch.Tensor | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    if example is None:
        raise InvalidArgument("torch.export needs the input's shape or an example input")
    return tuple(example.shape)
