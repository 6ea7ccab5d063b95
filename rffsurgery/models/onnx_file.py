"""ONNX files as models: ``analyze("model.onnx")``, whatever framework wrote the file.

:func:`load_onnx` reads the file's graph **without its weights**: every initializer
becomes a parameter (floating point, one dim or more) or a buffer on the meta
device, with its ONNX name (``layer1.0.conv1.weight``, ``onnx::Conv_193``), so
freeze plans name the file's own initializers and shapes come from meta tensors.
External-data files (``model.onnx.data``) are never read for weights; a small
value the analysis needs (a Reshape's target shape, a Pad's pads) is read from
them when it is stored there, and a missing file is then a one-line error.

The graph itself is turned into an fx graph over torch functions by
:mod:`rffsurgery.trace.onnx` (a capture, next to the fx tracer), for one input size.
An :class:`OnnxModel` is not runnable: rffsurgery analyses ONNX graphs, it does not
run, rewrite or train them.

Input layout: the analysis always takes ``(channels, *spatial)``; a channels-last
file (TensorFlow/Keras exports: ``[N, H, W, C]`` then ``Transpose(0, 3, 1, 2)``) is
recognised by that transpose and fed a permuted input, so units are still
``(row, column)``.  1-D and 3-D inputs work alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgument, RffError, first_line

__all__ = ["OnnxFileError", "OnnxModel", "data_files", "is_onnx_file", "load_onnx", "onnx_input"]

SUFFIX = ".onnx"
_FLOAT_TYPES = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
_OTHER_TYPES = {2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32, 7: torch.int64,
                9: torch.bool, 12: torch.uint32, 13: torch.uint64}


class OnnxFileError(RffError, ValueError):
    """An ONNX file that cannot be analysed: empty, corrupt, truncated, several inputs, a missing data file."""


def is_onnx_file(spec: str) -> bool:
    """Whether a model name is an ONNX file (by its suffix; the file need not exist yet)."""
    return spec.lower().endswith(SUFFIX)


@dataclass(frozen=True)
class OnnxInput:
    """The file's image input: its name, dims in the file's order (``None`` where dynamic) and layout."""

    name: str
    dims: tuple[int | None, ...]
    channels_last: bool

    @property
    def size(self) -> tuple[int, ...]:
        """``(C, *spatial)``, channels first whatever the file's layout; 0 marks a dynamic dim."""
        dims = [d or 0 for d in self.dims]
        return tuple([dims[-1], *dims[1:-1]] if self.channels_last else dims[1:])


class OnnxModel(nn.Module):
    """An ONNX file's initializers as meta tensors under their ONNX names, and its graph (see the module docstring)."""

    def __init__(self, path: Path, proto: Any, source: OnnxInput) -> None:
        super().__init__()
        self.path = path
        self.proto = proto
        self.input = source
        self.default_input_size = source.size
        self.tensor_names: dict[str, str] = {}  # ONNX initializer name → attribute path (the same where possible)
        for tensor in proto.graph.initializer:
            self.tensor_names[tensor.name] = self._register(tensor.name, _meta(tensor))

    def _register(self, name: str, value: torch.Tensor) -> str:
        """Register under the ONNX name, dots making submodules; names that cannot be attributes get a safe one."""
        parts = name.split(".")
        try:
            owner: nn.Module = self
            for part in parts[:-1]:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            _put(owner, parts[-1], value)
            return name
        except (KeyError, TypeError, AttributeError):  # empty parts, a clash with an attribute or another tensor
            safe = "onnx_" + "".join(c if c.isalnum() else "_" for c in name) + f"_{len(self.tensor_names)}"
            _put(self, safe, value)
            return safe

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(f"{self.path} is an ONNX file: rffsurgery analyses its graph (analyze, plan check) "
                              "but does not run it; run it with onnxruntime")


def _put(owner: nn.Module, name: str, value: torch.Tensor) -> None:
    if not name or hasattr(owner, name):
        raise KeyError(name)
    if value.is_floating_point() and value.dim() >= 1:
        owner.register_parameter(name, nn.Parameter(value, requires_grad=False))
    else:
        owner.register_buffer(name, value)


def _meta(tensor: Any) -> torch.Tensor:
    """An initializer's shape as a meta tensor (float32 for every floating type: only shapes are analysed)."""
    dtype = torch.float32 if tensor.data_type in _FLOAT_TYPES else _OTHER_TYPES.get(tensor.data_type, torch.float32)
    return torch.empty(tuple(tensor.dims), dtype=dtype, device="meta")


@functools.lru_cache(maxsize=2)
def _read(path: Path, mtime_ns: int, size: int) -> Any:
    """The file's ModelProto without external data (cached by modification time: resolve and build read it once)."""
    import onnx

    if size == 0:  # onnx.load accepts it silently, as an empty model
        raise OnnxFileError(f"{path} is empty (0 bytes), not an ONNX model: export or download it again")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError (not imported: protobuf is onnx's dependency), OSError …
        if type(exc).__name__ == "DecodeError":
            raise OnnxFileError(f"{path} is not a valid ONNX file ({first_line(exc)}): it is corrupt or truncated; "
                                "export or download it again") from None
        raise OnnxFileError(f"cannot read {path} as ONNX: {type(exc).__name__}: {first_line(exc)}") from None
    if proto.ir_version == 0 or not proto.graph.node:
        raise OnnxFileError(f"{path} holds no ONNX graph (ir_version {proto.ir_version}, {len(proto.graph.node)} "
                            "nodes): it is not an ONNX model, or it is truncated; export it again")
    return proto


def _proto(path: str | Path) -> tuple[Path, Any]:
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"no such ONNX file: {path}" if not path.exists() else f"{path} is not a file")
    stat = path.stat()
    return path, _read(path.resolve(), stat.st_mtime_ns, stat.st_size)


def onnx_input(path: str | Path) -> OnnxInput:
    """The file's one image input (a one-line error for none, several, or a non-image one)."""
    path, proto = _proto(path)
    graph = proto.graph
    stored = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in stored]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise OnnxFileError(f"{path} takes {len(inputs)} inputs ({names}); rffsurgery analyses models of one image "
                            "(or signal) input")
    x = inputs[0]
    kind = x.type.tensor_type
    if kind.elem_type not in _FLOAT_TYPES:
        raise OnnxFileError(f"{path}: input '{x.name}' holds {_type_name(kind.elem_type)} values, not an image or "
                            "signal; rffsurgery analyses models of one floating-point input")
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in kind.shape.dim)
    if len(dims) < 3:
        raise OnnxFileError(f"{path}: input '{x.name}' has {len(dims)} dims; rffsurgery needs (batch, channels, "
                            "*spatial) or channels-last (batch, *spatial, channels)")
    if dims[0] not in (None, 1):
        raise OnnxFileError(f"{path}: the file fixes the batch at {dims[0]}; rffsurgery analyses batch 1: export it "
                            "with batch 1 or a dynamic batch axis")
    rank = len(dims)
    last = [0, rank - 1, *range(1, rank - 1)]
    channels_last = any(n.op_type == "Transpose" and n.input[:1] == [x.name] and _perm(n) == last for n in graph.node)
    return OnnxInput(x.name, dims, channels_last)


def _perm(node: Any) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _type_name(elem_type: int) -> str:
    dtype = _OTHER_TYPES.get(elem_type)
    return str(dtype).replace("torch.", "") if dtype is not None else f"ONNX type {elem_type}"


def load_onnx(path: str | Path) -> OnnxModel:
    """The file as an :class:`OnnxModel` (see the module docstring); weights are never read."""
    source = onnx_input(path)
    path, proto = _proto(path)
    return OnnxModel(path, proto, source).eval()


def data_files(path: str | Path) -> list[Path]:
    """The external-data files the ONNX file names (so outputs never replace them); none if it cannot be read."""
    try:
        path, proto = _proto(path)
    except RffError:
        return []
    found = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    return [path.parent / name for name in sorted(found)]
