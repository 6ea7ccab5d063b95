"""The ONNX front end: an ONNX graph → an fx graph over torch functions, for one input size.

Why a conversion and not a second engine: the receptive-field rules, the tagging, the
plans and every report already work on fx graphs.  Turning each ONNX node into the
torch calls the rules table knows (:mod:`.onnx_ops`) keeps one engine and one table;
an op added for PyTorch models serves ONNX files too.  Converters such as onnx2torch
were measured and rejected (docs/onnx.md): they cannot read what torch ≥ 2.9 exports
(opset 18+), lose the initializer names, and their modules do not run on the meta device.

The walk, node by node (ONNX stores nodes in topological order):

* **values known at conversion time** are numpy arrays: initializers stored in the
  file, ``Constant`` nodes, ``Shape``/``Size`` of a tensor (its meta shape is known), and
  every node all of whose inputs are known — the shape arithmetic exporters leave in
  graphs (timm's dynamic 'SAME' padding: Shape→Gather→Sub→…→Pad) is computed with
  onnx's reference evaluator, so a Pad, Reshape or Resize gets its amounts as numbers;
* **tensors** become fx nodes: the input a placeholder (permuted for channels-last
  files, see :mod:`rffsurgery.models.onnx_file`), initializers ``get_attr`` nodes under
  their ONNX names (meta parameters: weights are never read), every other node the
  torch calls of its converter, each run at once on the meta device so the next
  converter sees real shapes;
* each converted node's output shape is checked against ONNX shape inference: where
  PyTorch's equivalent disagrees (a ``ceil_mode`` corner case, say) the node is
  reported unknown instead of guessed; so is a node without a converter (by its op type)
  or a form without an exact one (by its reason), with the partial result before it.

Node names are module paths where the exporter recorded them, as the fx tracer names
PyTorch models: the module owning a ``X.weight`` initializer (``layer1.0.conv1``), the
``pkg.torch.onnx.name_scopes`` metadata of torch's dynamo exporter, or the scopes of the
legacy exporter's node names (``/layer1/layer1.0/conv1/Conv``).  Files from other
frameworks keep their ONNX node names.
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper, shape_inference
from torch import fx, nn

from ..errors import InvalidArgument, RffError
from ..geometry.propagate import TOO_SMALL, ShapeError
from ..models.onnx_file import OnnxFileError, OnnxModel
from .meta import read_attr, run_op
from .onnx_ops import OPS, Unsupported, opaque
from .tracer import Traced

__all__ = ["capture_onnx"]

FOLD_LIMIT = 1 << 16
"""Initializers of at most this many elements may be read as values (shape arithmetic); larger ones are weights."""
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization",
               "InstanceNormalization", "GroupNormalization", "PRelu"}
_WEIGHT = re.compile(r"^[A-Za-z_]\w*(\.\w+)*\.(weight|bias)$")
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
CONSTANTS = "onnx_constants"


def capture_onnx(model: OnnxModel, input_shape: tuple[int, ...]) -> Traced:
    """The file's graph as a :class:`Traced` for one input of ``input_shape`` (batch first, channels first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own warnings about running ops are not the user's
        return _Converter(model, tuple(input_shape)).run()


@dataclass
class _Live:
    """A tensor of the graph (its meta value is ``_Converter.meta[node]``)."""

    node: fx.Node


class _MetaFailure(Exception):
    """A converted op failed on the meta device (its message is torch's)."""


class _Converter:
    def __init__(self, model: OnnxModel, input_shape: tuple[int, ...]) -> None:
        self.model, self.proto = model, model.proto
        self.graph = fx.Graph()
        self.opsets = {o.domain or "": o.version for o in self.proto.opset_import}
        self.opset = self.opsets.get("", self.opsets.get("ai.onnx", 1))
        self.init = {t.name: t for t in self.proto.graph.initializer}
        self.values: dict[str, np.ndarray | _Live] = {}
        self.alias: dict[str, str] = {}
        self.attrs: dict[str, fx.Node] = {}
        self.meta: dict[fx.Node, Any] = {}
        self.origin: dict[fx.Node, Any] = {}
        self.input_shape = input_shape
        self.file_shape = self._file_shape(input_shape)
        self.inferred = self._infer()
        graph = self.proto.graph
        self.readers: dict[str, list[Any]] = defaultdict(list)
        for n in graph.node:
            for i in n.input:
                self.readers[i].append(n)
        self.used = set(self.readers) | {o.name for o in graph.output}
        self.fused: set[int] = set()  # nodes already converted as part of a pattern (_group_norm)

    # -- the input ------------------------------------------------------------
    def _file_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        source = self.model.input
        if len(shape) != len(source.dims):
            raise InvalidArgument(f"{self.model.path} takes a {len(source.dims) - 2}-D input ({_size(source.size)}, "
                                  f"channels first); got input size {_size(shape[1:])}")
        ordered = (shape[0], *shape[2:], shape[1]) if source.channels_last else shape
        dynamic = [i for i, d in enumerate(source.dims) if d is None and i > 0]
        if any(ordered[i] == 0 for i in dynamic):
            dims = ", ".join("N" if i == 0 else str(d) if d is not None else "?" for i, d in enumerate(source.dims))
            raise InvalidArgument(f"input '{source.name}' of {self.model.path} has dynamic dims ({dims}): give "
                                  "--input-size (channels, then spatial sizes: e.g. 3,224,224)")
        fixed = [(i, d) for i, d in enumerate(source.dims) if d is not None and i > 0]
        if any(ordered[i] != d for i, d in fixed):
            raise InvalidArgument(f"{self.model.path} fixes its input at {_size(source.size)} (channels first); input "
                                  f"size {_size(shape[1:])} disagrees: give the file's size, or export it with dynamic "
                                  "axes")
        return ordered

    def _infer(self) -> dict[str, tuple[int | None, ...]]:
        """ONNX's own shape of every value at this input size (weights left out: only their shapes count)."""
        graph = self.proto.graph
        source = self.model.input
        inputs = [helper.make_tensor_value_info(source.name, next(i for i in graph.input if i.name == source.name)
                                                .type.tensor_type.elem_type, self.file_shape)]
        small = []
        for t in graph.initializer:
            if _inline(t) and _numel(t) <= FOLD_LIMIT:
                small.append(t)
            else:
                inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        skeleton = helper.make_model(helper.make_graph(list(graph.node), graph.name or "graph", inputs,
                                                       list(graph.output), small),
                                     opset_imports=list(self.proto.opset_import), ir_version=self.proto.ir_version,
                                     functions=list(self.proto.functions))
        try:
            inferred = shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is only a cross-check
            return {}
        out = {}
        for vi in [*inferred.graph.value_info, *inferred.graph.output]:
            kind = vi.type.tensor_type
            if kind.HasField("shape"):
                out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim)
        return out

    # -- the walk -------------------------------------------------------------
    def run(self) -> Traced:
        source = self.model.input
        x = self.graph.placeholder(source.name)
        self.meta[x] = torch.empty(self.input_shape, device="meta")
        if source.channels_last:
            rank = len(self.input_shape)
            x = self._emit("call_function", torch.permute, (x, (0, *range(2, rank), 1)), {}, None)
            x.meta["rff_op"] = "channels last"
        self.values[source.name] = _Live(x)
        for node in self.proto.graph.node:  # constants first: a pattern (_group_norm) may read one placed later
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.values[node.output[0]] = _constant(node)
        for node in self.proto.graph.node:
            self._convert(node)
        outs = [self._canon(o.name) for o in self.proto.graph.output]
        live = tuple(v.node for v in (self.values.get(o) for o in outs) if isinstance(v, _Live))
        self.graph.output(live[0] if len(live) == 1 else live)
        for node in [n for n in self.graph.nodes if n.op == "get_attr" and not n.users]:
            self.graph.erase_node(node)
        names, outputs = _Namer(self).names()
        sized = self.input_shape if any(d is None for d in source.dims[1:]) else None
        return Traced(self.model, self.graph, names, outputs, sized, capture="onnx")

    def _canon(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def _convert(self, node: Any) -> None:
        op, domain = node.op_type, node.domain or ""
        ins = [self._canon(i) if i else "" for i in node.input]
        default = domain in ("", "ai.onnx")
        if id(node) in self.fused or default and op == "Reshape" and self._group_norm(node, ins):
            return
        if default and op == "Constant":  # read before the walk
            return
        if default and op in ("Identity", "Dropout") or default and op == "Cast" and self._float_cast(node, ins[0]):
            self.alias[node.output[0]] = ins[0]
            return
        if default and op in ("Shape", "Size") and ins[0]:
            shape = self.shape(ins[0])
            attrs = _attrs(node)
            self.values[node.output[0]] = (np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))],
                                                    dtype=np.int64) if op == "Shape"
                                           else np.array(int(np.prod(shape)), dtype=np.int64))
            return
        if self._foldable(node, ins) and self._fold(node, ins):
            return
        mark = len(self.graph.nodes)
        context = _Node(self, node, ins)
        try:
            if not default or op not in OPS:
                raise Unsupported("")
            try:
                result = OPS[op](context)
            except RffError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:  # a form not foreseen
                raise Unsupported(f"{type(exc).__name__}: {exc}") from exc
            outs = result if isinstance(result, tuple) else (result,)
            self._check(node, outs)
        except _MetaFailure as exc:
            self._rollback(mark)
            cause = str(exc)
            if TOO_SMALL.search(cause):
                size = _size(self.input_shape[1:])
                raise ShapeError(f"input {size} is too small for {self.model.path}: node '{node.name}' ({op}) fails "
                                 f"({cause}); try a larger --input-size", node=node.name, op=op, cause=cause,
                                 too_small=True) from None
            self._opaque(node, ins, f"ONNX {op} (PyTorch's equivalent fails: {cause})")
            return
        except Unsupported as exc:
            self._rollback(mark)
            what = f"ONNX {op}" if default else f"ONNX {domain}.{op}"
            self._opaque(node, ins, f"{what} ({exc})" if str(exc) else what)
            return
        for name, value in zip(node.output, outs):
            if name and isinstance(value, fx.Node):
                self.values[name] = _Live(value)
                if self.origin.get(value) is node:  # the op column: ONNX's name for what made the output
                    value.meta["rff_op"] = op
            elif name and value is not None:
                self.values[name] = np.asarray(value)

    def _group_norm(self, node: Any, ins: list[str]) -> bool:
        """GroupNorm as exporters before opset 18 write it: Reshape (N, G, -1) → InstanceNormalization → Reshape back.

        Converted as ``F.group_norm`` on the original tensor: the reshapes merge the spatial
        dims, which would make every axis global, while GroupNorm only adds global context.
        Only when the instance norm's own scale and bias are ones and zeros (the per-channel
        affine follows as Mul/Add, converted as usual).
        """
        x = self.values.get(ins[0])
        norms = self.readers[node.output[0]]
        if not isinstance(x, _Live) or len(norms) != 1 or norms[0].op_type != "InstanceNormalization":
            return False
        norm = norms[0]
        backs = self.readers[norm.output[0]]
        shape = tuple(self.meta[x.node].shape)
        out = self.inferred.get(node.output[0])
        if len(backs) != 1 or backs[0].op_type != "Reshape" or len(shape) < 3 or not out or len(out) != 3 \
                or self.inferred.get(backs[0].output[0]) != shape or not out[1] or shape[1] % out[1]:
            return False
        try:
            scale, bias = self.static(self._canon(norm.input[1])), self.static(self._canon(norm.input[2]))
        except (KeyError, OnnxFileError):
            return False
        if not (np.all(scale == 1) and np.all(bias == 0)):
            return False
        eps = _attrs(norm).get("epsilon", 1e-5)
        y = self._emit("call_function", F.group_norm, (x.node, int(out[1]), None, None, eps), {}, norm)
        y.meta["rff_op"] = "InstanceNormalization"
        self.values[backs[0].output[0]] = _Live(y)
        self.fused.update({id(norm), id(backs[0])})
        return True

    def _float_cast(self, node: Any, source: str) -> bool:
        """A Cast between floating types: the analysis runs float32 throughout, so it is the identity."""
        to = _attrs(node).get("to")
        live = self.values.get(source)
        return to in (1, 10, 11, 16) and isinstance(live, _Live) and self.meta[live.node].is_floating_point()

    def _foldable(self, node: Any, ins: list[str]) -> bool:
        if node.op_type in _RANDOM or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                          for a in node.attribute):
            return False
        return all(not name or isinstance(self.values.get(name), np.ndarray) or self._readable(name) for name in ins)

    def _readable(self, name: str) -> bool:
        t = self.init.get(name)
        if t is None or _numel(t) > FOLD_LIMIT:
            return False
        return _inline(t) or _external_file(t, self.model.path).is_file()

    def _fold(self, node: Any, ins: list[str]) -> bool:
        from onnx.reference import ReferenceEvaluator

        feeds = {orig: self.static(name) for orig, name in zip(node.input, ins) if orig}
        try:
            outs = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the reference evaluator lacks: convert it like any other
            return False
        for name, value in zip(node.output, outs):
            if name:
                self.values[name] = np.asarray(value)
        return True

    def static(self, name: str) -> np.ndarray:
        """A value known at conversion time (a one-line error if it lives in a missing external-data file)."""
        value = self.values.get(name)
        if isinstance(value, np.ndarray):
            return value
        t = self.init[name]
        if not _inline(t):
            location = _external_file(t, self.model.path)
            if not location.is_file():
                raise OnnxFileError(f"{self.model.path}: the value of '{name}' is stored in the external-data file "
                                    f"{location.name}, which is missing: put it next to the model")
        value = numpy_helper.to_array(t, base_dir=str(self.model.path.parent))
        self.values[name] = value
        return value

    def _check(self, node: Any, outs: tuple) -> None:
        """ONNX's inferred output shapes must be PyTorch's: otherwise the equivalent is not exact."""
        for name, value in zip(node.output, outs):
            want = self.inferred.get(name)
            if not isinstance(value, fx.Node) or want is None or any(d is None for d in want):
                continue
            got = getattr(self.meta[value], "shape", None)
            if got is not None and tuple(got) != want:
                raise Unsupported(f"PyTorch's equivalent gives shape {tuple(got)} where ONNX infers {want}")

    def _rollback(self, mark: int) -> None:
        for fx_node in reversed(list(self.graph.nodes)[mark:]):
            if fx_node.op != "get_attr":
                self.graph.erase_node(fx_node)
                self.meta.pop(fx_node, None)

    def _opaque(self, node: Any, ins: list[str], label: str) -> None:
        """A node without an exact conversion: its ONNX output shapes, and no geometry rule (reported unknown)."""
        args = tuple(self.values[n].node for n in ins if isinstance(self.values.get(n), _Live))
        shapes = []
        for name in node.output:
            want = self.inferred.get(name)
            shapes.append(want if want is not None and all(d is not None for d in want) else None)
        fn = opaque(label, shapes, [torch.float32] * len(shapes))
        out = self._emit("call_function", fn, args, {}, node)
        out.meta["rff_op"] = node.op_type
        if len(node.output) == 1:
            self.values[node.output[0]] = _Live(out)
            return
        for k, name in enumerate(node.output):
            if name:
                self.values[name] = _Live(self._emit("call_function", operator.getitem, (out, k), {}, node))

    # -- graph building -------------------------------------------------------
    def _emit(self, kind: str, target: Any, args: tuple, kwargs: dict, origin: Any) -> fx.Node:
        node = self.graph.create_node(kind, target, args, kwargs)
        values = fx.node.map_arg((args, kwargs), lambda n: self.meta[n])
        try:
            self.meta[node] = run_op(kind, target, None, *values)
        except Exception as exc:  # noqa: BLE001 - torch says why; the caller decides what it means
            self.graph.erase_node(node)
            raise _MetaFailure((str(exc).strip().splitlines() or [type(exc).__name__])[0]) from None
        self.origin[node] = origin
        return node

    def tensor(self, name: str) -> Any:
        """A graph value for input ``name``: its node, a get_attr of an initializer or constant, or a Python scalar."""
        value = self.values.get(name)
        if isinstance(value, _Live):
            return value.node
        if name in self.init:
            return self._get_attr(name, self.model.tensor_names[name])
        array = self.static(name)
        if array.ndim == 0 and array.dtype.kind in "fiub":
            return array.item()
        return self._get_attr(name, self._constant_attr(name, array))

    def _get_attr(self, key: str, target: str) -> fx.Node:
        if key not in self.attrs:
            node = self.graph.get_attr(target)
            self.meta[node] = read_attr(self.model, target)
            self.attrs[key] = node
        return self.attrs[key]

    def _constant_attr(self, name: str, array: np.ndarray) -> str:
        holder = self.model._modules.get(CONSTANTS)
        if holder is None:
            holder = nn.Module()
            self.model.add_module(CONSTANTS, holder)
        safe = "v_" + "".join(c if c.isalnum() else "_" for c in name)
        value = torch.from_numpy(np.ascontiguousarray(array.astype(np.float32) if array.dtype.kind == "f" else array))
        holder.register_buffer(safe, value, persistent=False)
        return f"{CONSTANTS}.{safe}"

    def shape(self, name: str) -> tuple[int, ...]:
        value = self.values.get(name)
        if isinstance(value, _Live):
            return tuple(self.meta[value.node].shape)
        if isinstance(value, np.ndarray):
            return tuple(value.shape)
        return tuple(self.init[name].dims)


class _Node:
    """One ONNX node as its converter sees it (the protocol :class:`rffsurgery.trace.onnx_ops.Node`)."""

    def __init__(self, conv: _Converter, node: Any, ins: list[str]) -> None:
        self._c, self._node, self._ins = conv, node, ins
        self.op = node.op_type
        self.opset = conv.opset
        self.n_inputs = len(ins)
        self.n_outputs = len(node.output)
        self._attrs = _attrs(node)

    def attr(self, name: str, default: Any = None) -> Any:
        return self._attrs.get(name, default)

    def has(self, i: int) -> bool:
        return i < len(self._ins) and bool(self._ins[i])

    def x(self, i: int) -> Any:
        return self._c.tensor(self._ins[i])

    def value(self, i: int, what: str) -> np.ndarray:
        name = self._ins[i]
        if isinstance(self._c.values.get(name), _Live):
            raise Unsupported(f"its {what} are computed at run time")
        return self._c.static(name)

    def shape(self, i: int) -> tuple[int, ...]:
        return self._c.shape(self._ins[i])

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> fx.Node:
        return self._c._emit("call_function", fn, args, kwargs, self._node)

    def method(self, name: str, *args: Any) -> fx.Node:
        return self._c._emit("call_method", name, args, {}, self._node)

    def outputs_used(self) -> list[bool]:
        return [bool(o) and o in self._c.used for o in self._node.output]


class _Namer:
    """Module-path names for the converted graph (see the module docstring)."""

    def __init__(self, conv: _Converter) -> None:
        self.c = conv
        self.scopes = {id(n): self._scope(n) for n in conv.proto.graph.node}
        paths = {s for s in self.scopes.values() if s}
        self.parents = {p.rsplit(".", k)[0] for p in paths for k in range(1, p.count(".") + 1)}

    def _scope(self, node: Any) -> str | None:
        """The module path recorded for an ONNX node, or ``None`` when the file records none."""
        weight = self.c._canon(node.input[1]) if len(node.input) > 1 else ""
        if node.op_type in _WEIGHT_OPS and weight in self.c.init and _WEIGHT.match(weight):
            return weight.rsplit(".", 1)[0]
        meta = {p.key: p.value for p in node.metadata_props}
        if "pkg.torch.onnx.name_scopes" in meta:
            try:
                scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
                return str(scopes[-2]) if len(scopes) >= 2 else ""
            except (ValueError, SyntaxError, IndexError):
                return None
        if node.name.startswith("/"):  # /layer2/layer2.0/downsample/downsample.0/Conv: a child of a container
            path, last = "", ""          # repeats the container's name (downsample.0), others are plain names
            for part in [p for p in node.name.split("/") if p][:-1]:
                path = path[:len(path) - len(last)] + part if last and part.startswith(last + ".") else \
                    ".".join(p for p in (path, part) if p)
                last = part
            return path
        return None

    def names(self) -> tuple[dict[fx.Node, str], dict[str, str]]:
        names: dict[fx.Node, str] = {}
        seen: dict[str, int] = defaultdict(int)

        def unique(base: str) -> str:
            count = seen[base]
            seen[base] += 1
            return base if count == 0 else f"{base}_{count}"

        calls = []
        for node in self.c.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                names[node] = unique(str(node.target))
            elif node.op == "output":
                names[node] = unique("output")
            else:
                calls.append(node)
        keyed = [(node, *self._path(node)) for node in calls]
        outputs: dict[str, fx.Node] = {}
        for i, (node, path, leaf, module) in enumerate(keyed):
            last = i + 1 == len(keyed) or keyed[i + 1][1] != path
            label = _label(node)
            names[node] = unique(path if path and leaf and last else ".".join(p for p in (path, label) if p))
            if module:
                parts = path.split(".") if path else []
                for k in range(1, len(parts) + (0 if leaf else 1)):  # a leaf's output is the node it names
                    outputs[".".join(parts[:k])] = node
        return names, {path: names[node] for path, node in outputs.items()}

    def _path(self, node: fx.Node) -> tuple[str, bool, bool]:
        """(path, whether it names a leaf, whether it is a module path) for a call node."""
        origin = self.c.origin.get(node)
        if origin is None:  # the channels-last permute of the input
            return "", False, False
        scope = self.scopes[id(origin)]
        if scope is None:
            return origin.name.strip("/").replace("/", "."), bool(origin.name), False
        return scope, scope not in self.parents, True


def _label(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    name = getattr(node.target, "__name__", "op")
    return node.meta.get("rff_op", name).lower() if name.startswith("ONNX") else name


def _attrs(node: Any) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _constant(node: Any) -> np.ndarray:
    a = node.attribute[0]
    value = helper.get_attribute_value(a)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


def _inline(t: Any) -> bool:
    return t.data_location != onnx.TensorProto.EXTERNAL


def _numel(t: Any) -> int:
    return int(np.prod(list(t.dims))) if len(t.dims) else 1


def _external_file(t: Any, model_path: Path) -> Path:
    location = next((e.value for e in t.external_data if e.key == "location"), "")
    return model_path.parent / location


def _size(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size))
