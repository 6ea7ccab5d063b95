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
"""

from __future__ import annotations

import functools
import inspect
import sys
import traceback
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import fx, nn

from .errors import RffError

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

    @functools.cached_property
    def graph_module(self) -> fx.GraphModule:
        """A runnable GraphModule sharing this graph (and so the node names)."""
        return fx.GraphModule(self.root, self.graph, class_name=type(self.root).__name__)


class _PathTracer(fx.Tracer):
    def __init__(self, leaf_modules: Iterable[type], autowrap_functions: Iterable[Callable]) -> None:
        from .geometry.rules import keeps_whole

        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self._keeps_whole = keeps_whole
        self._leaf_types = tuple(leaf_modules)
        self._path = ""
        self.names: dict[fx.Node, str] = {}
        self.module_outputs: dict[str, fx.Node] = {}
        self.failed_in: list[tuple[str, nn.Module]] | None = None  # module stack when tracing failed
        self._stack: list[tuple[str, nn.Module]] = []
        self._seen: dict[str, int] = defaultdict(int)

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


def _timm_notrace() -> tuple[list[type], list[Callable]]:
    if "timm" not in sys.modules:
        return [], []
    from timm.layers import get_notrace_functions, get_notrace_modules

    return list(get_notrace_modules()), list(get_notrace_functions())


def trace(model: nn.Module, leaf_modules: Iterable[type] = (), autowrap_functions: Iterable[Callable] = ()) -> Traced:
    """Trace ``model`` in eval mode (restoring its mode afterwards).

    ``leaf_modules`` are kept as single nodes (give them a geometry rule);
    ``autowrap_functions`` are recorded as calls instead of traced through.
    """
    from .geometry.rules import has_module_rule

    timm_leaves, timm_functions = _timm_notrace()
    leaves = [*leaf_modules, *(c for c in timm_leaves if has_module_rule(c))]
    optional = {c for c in timm_leaves if c not in leaves}
    # Arguments with defaults (masks, flags like is_causal) are traced at their defaults, as a
    # plain ``model(x)`` call passes them: as proxies, fx would follow or trip on their branches.
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params
                if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    was_training = model.training
    model.eval()
    try:
        while True:
            tracer = _PathTracer(leaves, [*timm_functions, *autowrap_functions])
            try:
                graph = tracer.trace(model, concrete_args=concrete or None)
                break
            except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError, AttributeError…
                stack = tracer.failed_in or []
                culprit = next((type(m) for _, m in reversed(stack) if type(m) in optional), None)
                if culprit is None:
                    raise _trace_error(model, stack, exc) from exc
                optional.discard(culprit)  # timm knew: keep that block whole and try again
                leaves.append(culprit)
    finally:
        model.train(was_training)
    outputs = {path: tracer.names[node] for path, node in tracer.module_outputs.items()}
    return Traced(tracer.root, graph, tracer.names, outputs)


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
