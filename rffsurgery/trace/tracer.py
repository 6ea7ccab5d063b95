"""torch.fx tracing with module-path node names (``layer2.0.conv2``, ``layer1.0.add``).

Node names follow torchvision's feature extractor so that users can paste them
into ``create_feature_extractor``: a leaf module is named by its path, any
other op by the path of the module it was called in plus the op name, with a
``_1``, ``_2`` suffix when a name repeats.  Parameters and buffers read in
``forward`` (``get_attr``) are named by their attribute path.  torchvision's own ``NodePathTracer``
de-duplicates by scanning every earlier name, which is quadratic in graph size;
here a counter per name keeps tracing linear.

timm lists modules and functions to keep whole under fx (dynamic 'SAME' padding,
window reshapes, blocks it wants as single features); whenever timm is loaded we
honour its functions, and keep its modules whole when the rules table has a rule
for them or when tracing through them fails.  Blocks that trace cleanly
(``NormFreeBlock``) are traced through, so their convolutions get exact geometry
instead of an unknown block.

A model whose Python branches on its input's shape (``if x.ndim == 4``,
``N % k != 0``) cannot be traced symbolically.  Given the input's shape,
:func:`trace` then traces again with proxies that carry meta tensors, so
``.shape``, ``.ndim``, ``.size()``, ``.dim()``, ``.numel()`` and ``len()`` are
concrete and those branches resolve; the graph then holds for that input shape
only, and :attr:`Traced.sized_for` says so.  Branches on tensor *values* still
fail, with the construct named.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import traceback
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import fx, nn

from ..errors import RffError
from ..geometry.rules import has_module_rule, keeps_whole
from ..usercode import FORWARD_FIX, user_code
from .meta import read_attr, run_op, to_meta

__all__ = ["TraceError", "Traced", "trace"]


class TraceError(RffError, RuntimeError):
    """The model cannot be traced by torch.fx; the message names the module and the fix."""


@dataclass
class Traced:
    """A traced model: the fx graph over the model's own modules, and the module-path name of every node.

    Analysis only reads the graph, so no ``GraphModule`` (which generates and compiles
    Python code for the graph) is built unless someone asks for one.
    """

    root: nn.Module
    graph: fx.Graph
    names: dict[fx.Node, str]
    module_outputs: dict[str, str]  # non-leaf module path → name of the node holding its output
    sized_for: tuple[int, ...] | None = None
    """The input shape the graph was specialised to (its Python branched on shapes), else ``None``."""
    capture: str = "fx"
    """How the graph was captured: ``"fx"`` (symbolic tracing, here), ``"export"`` (torch.export, for the branch
    its example input took: :mod:`.torch_export`) or ``"onnx"`` (an ONNX file's graph: :mod:`.onnx`)."""

    @functools.cached_property
    def graph_module(self) -> fx.GraphModule:
        """A runnable GraphModule sharing this graph (and so the node names)."""
        return fx.GraphModule(self.root, self.graph, class_name=type(self.root).__name__)


class _PathTracer(fx.Tracer):
    def __init__(self, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> None:
        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self._keeps_whole = keeps_whole
        self._leaf_types = tuple(leaf_modules)
        self._path = ""
        self.names: dict[fx.Node, str] = {}
        self.module_outputs: dict[str, fx.Node] = {}
        self.failed_in: list[tuple[str, nn.Module]] | None = None  # module stack when tracing failed
        self._stack: list[tuple[str, nn.Module]] = []
        self._seen: dict[str, int] = defaultdict(int)
        self._tensor_names: tuple[dict[int, str], dict[int, str]] | None = None  # see getattr

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        """A parameter or buffer read in ``forward`` becomes a ``get_attr`` node, as in fx.

        fx finds its name by scanning every parameter of the model on each read, which is
        quadratic (a third of the tracing time of an NFNet); here a dict by identity, built
        once per trace, keeps fx's answer (first name of a shared tensor, buffers only when
        ``proxy_buffer_attributes``).
        """
        if not isinstance(attr_val, torch.Tensor):
            return attr_val
        if self._tensor_names is None:
            params: dict[int, str] = {}
            buffers: dict[int, str] = {}
            for name, p in self.root.named_parameters():
                params.setdefault(id(p), name)
            for name, b in self.root.named_buffers():
                buffers.setdefault(id(b), name)
            self._tensor_names = params, buffers
        params, buffers = self._tensor_names
        name = params.get(id(attr_val)) if isinstance(attr_val, nn.Parameter) else None
        if name is None and self.proxy_buffer_attributes:
            name = buffers.get(id(attr_val))
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (isinstance(m, self._leaf_types) or self._keeps_whole(type(m))
                or super().is_leaf_module(m, module_qualified_name))

    def call_module(self, m: nn.Module, forward: Callable, args: Any, kwargs: Any) -> Any:
        outer = self._path
        try:
            self._path = self.path_of_module(m)
            self._stack.append((self._path, m))
            if not self.is_leaf_module(m, self._path):
                out = forward(*args, **kwargs)
                if isinstance(out, fx.Proxy) and self._path:
                    self.module_outputs[self._path] = out.node
                return out
            return self.create_proxy("call_module", self._path, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = list(self._stack)
            raise
        finally:
            self._stack.pop()
            self._path = outer

    def create_node(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                    type_expr: Any | None = None) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind in ("call_module", "get_attr"):
            base = str(target)
        else:
            op = node.name.rsplit("_", 1)[0] if node.name.rsplit("_", 1)[-1].isdigit() else node.name
            base = f"{self._path}.{op}" if self._path else op
        count = self._seen[base]
        self._seen[base] += 1
        self.names[node] = base if count == 0 else f"{base}_{count}"
        return node


class _SizedProxy(fx.Proxy):
    """A proxy whose shape is known: shape queries answer with plain Python values, not graph nodes."""

    _CONCRETE = frozenset({"shape", "ndim", "dim", "size", "numel"})

    def __getattr__(self, k: str) -> Any:
        if k in _SizedProxy._CONCRETE:
            meta = self.tracer.metas.get(self.node)  # type: ignore[attr-defined]
            if isinstance(meta, torch.Tensor):
                return getattr(meta, k)
        return super().__getattr__(k)

    def __len__(self) -> int:
        meta = self.tracer.metas.get(self.node)  # type: ignore[attr-defined]
        if isinstance(meta, (torch.Tensor, tuple, list)):
            return len(meta)
        return super().__len__()


class _SizedTracer(_PathTracer):
    """A path tracer that runs every recorded op on the meta device as it goes (see the module docstring)."""

    def __init__(self, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable],
                 input_shape: tuple[int, ...] | None) -> None:
        super().__init__(leaf_modules, autowrap_functions)
        self.input_shape = input_shape
        self.metas: dict[fx.Node, Any] = {}

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _SizedProxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                     type_expr: Any | None = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        try:
            # a module runs its own code, not fx's recording wrappers (functions and methods given
            # meta tensors, not proxies, already do); a speculative run warns nobody
            with _unpatched() if kind == "call_module" else contextlib.nullcontext(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.metas[proxy.node] = self._meta(kind, target, args, kwargs)
        except Exception:  # no meta kernel, or an input without a known value: the node stays symbolic
            pass
        return proxy

    def _meta(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        if kind == "placeholder":
            if self.input_shape is None or any(n.op == "placeholder" for n in self.metas):
                raise LookupError("only the first input's shape is known")
            floats = (p.dtype for p in self.root.parameters() if p.is_floating_point())
            return torch.empty(self.input_shape, dtype=next(floats, torch.get_default_dtype()), device="meta")
        if kind == "get_attr":
            return to_meta(read_attr(self.root, str(target)))
        args, kwargs = fx.node.map_aggregate((args, kwargs), self._value)
        module = self.root.get_submodule(target) if kind == "call_module" else None
        return run_op(kind, target, module, args, kwargs)

    def _value(self, arg: Any) -> Any:
        return self.metas[arg.node] if isinstance(arg, fx.Proxy) else arg


# fx patches nn.Module.__call__/__getattr__ and wrapped functions while it traces; running an op for
# real in the middle of a trace must undo that (private, so missing in some torch: ops then stay symbolic)
_unpatched: Callable[[], contextlib.AbstractContextManager] = getattr(
    fx._symbolic_trace, "_maybe_revert_all_patches", contextlib.nullcontext)


def _timm_notrace() -> tuple[list[type], list[Callable]]:
    if "timm" not in sys.modules:
        return [], []
    from timm.layers import get_notrace_functions, get_notrace_modules

    return list(get_notrace_modules()), list(get_notrace_functions())


def trace(model: nn.Module, leaf_modules: Iterable[type] = (), autowrap_functions: Iterable[Callable] = (),
          input_shape: tuple[int, ...] | None = None) -> Traced:
    """Trace ``model`` in eval mode (restoring its mode afterwards).

    ``leaf_modules`` are kept as single nodes (give them a geometry rule);
    ``autowrap_functions`` are recorded as calls instead of traced through.  With
    ``input_shape`` (batch included), a model whose Python branches on shapes is
    traced for that shape (see the module docstring).
    """
    timm_leaves, timm_functions = _timm_notrace()
    leaves = [*leaf_modules, *(c for c in timm_leaves if has_module_rule(c))]
    optional = {c for c in timm_leaves if c not in leaves}
    # Arguments with defaults (masks, flags like is_causal) are traced at their defaults, as a
    # plain ``model(x)`` call passes them: as proxies, fx would follow or trip on their branches.
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params
                if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    functions = [*timm_functions, *autowrap_functions]
    sized = False
    was_training = model.training
    model.eval()
    try:
        with user_code(f"the forward of {type(model).__name__}", FORWARD_FIX):
            while True:
                tracer = _SizedTracer(leaves, functions, input_shape) if sized else _PathTracer(leaves, functions)
                try:
                    graph = tracer.trace(model, concrete_args=concrete or None)
                    break
                except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError, AttributeError…
                    stack = tracer.failed_in or []
                    culprit = next((type(m) for _, m in reversed(stack) if type(m) in optional), None)
                    if culprit is not None:
                        optional.discard(culprit)  # timm knew: keep that block whole and try again
                        leaves.append(culprit)
                    elif input_shape is not None and not sized:
                        sized = True  # perhaps it only branches on shapes: trace again with them known
                    else:
                        raise _trace_error(model, stack, exc) from exc
    finally:
        model.train(was_training)
    outputs = {path: tracer.names[node] for path, node in tracer.module_outputs.items()}
    return Traced(tracer.root, graph, tracer.names, outputs, tuple(input_shape) if sized else None)


_CONSTRUCTS = (
    ("cannot be used as inputs to control flow", "data-dependent control flow (an if/while on a traced value)"),
    ("cannot be iterated", "iteration over a traced tensor"),
    ("len() is not supported", "len() of a traced tensor"),
)


def _construct(exc: Exception) -> str:
    """What fx tripped on, in words, and where in the model's source (the last frame outside torch)."""
    text = str(exc)
    what = next((name for marker, name in _CONSTRUCTS if marker in text), f"{type(exc).__name__}: {text}")
    torch_dir = torch.__file__.rsplit("/", 1)[0]
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(torch_dir) and not f.filename.endswith(("rffsurgery/trace.py",))]
    if frames:
        f = frames[-1]
        what += f" at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} ({(f.line or '').strip()[:80]})"
    return what.replace("\n", " ")


def _trace_error(model: nn.Module, stack: list[tuple[str, nn.Module]], exc: Exception) -> TraceError:
    path, module = stack[-1] if stack else ("", None)
    kind = type(module).__qualname__ if module is not None else "Cls"
    where = f"module '{path}' ({kind})" if path else "the model's own forward"
    return TraceError(
        f"torch.fx cannot trace {type(model).__name__}: in {where}: {_construct(exc)}; "
        f"fix: keep that module as one node (analyze(..., leaf_modules=[{kind}]) or "
        "--leaf package.module:Cls) and, if it changes spatial geometry, add a rule for it "
        "to rffsurgery.geometry.rules.TABLE."
    )
