"""Capture with ``torch.export``: models whose Python branches on tensor values, which torch.fx cannot trace.

``torch.fx.symbolic_trace`` refuses ``if x.sum() > 0:``; so do ``torch.export.export``
(strict or not) and ``torch._dynamo.export``.  ``torch.export.draft_export`` runs the
model on a real example input, takes the branch that input takes, and records a
graph of aten operators (``aten.conv2d.default``, ``aten.max_pool2d.default``, in-place
ones such as ``aten.relu_.default`` included) with guards that would fail on an input
taking another branch.  The guards are dropped here (they need values, and the meta
device has none); the graph, and so the analysis, **holds for the branch the example
input took** (:attr:`Traced.sized_for` says the graph is also specialised to its shape).
The aten operators are entries of the one rules table
(:mod:`rffsurgery.geometry.rules`), undecomposed, so no ``run_decompositions`` is needed.

Node names follow the fx tracer's (:mod:`.tracer`): the innermost module of each
operator (``node.meta["nn_module_stack"]``) names it — the output of a leaf module
(one without children) by the module's path (``layer1.0.conv1``), any other operator
by that path plus the operator (``layer1.0.add``).  Parameters keep their names
(``layer1.0.conv1.weight``), so freeze plans name the model's own parameters.

The example input is ``torch.randn`` with seed 0 unless one is given: a model that
branches on its input's values takes the branch of *that* input.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import defaultdict
from typing import Iterator

import torch
from torch import fx, nn

from ..errors import InvalidArgument, first_line
from ..usercode import FORWARD_FIX, user_code
from .tracer import Traced, TraceError

__all__ = ["NeedsRealWeights", "capture_export", "example_input"]

EXAMPLE_SEED = 0


class NeedsRealWeights(TraceError):
    """The model's tensors live on the meta device, but torch.export runs the model on real values to take its branches."""


def example_input(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The default example: standard normal values from a fixed seed, so a capture is repeatable."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(EXAMPLE_SEED), dtype=dtype)


def capture_export(model: nn.Module, input_shape: tuple[int, ...], example: torch.Tensor | None = None) -> Traced:
    """``model`` (eval mode, restored afterwards) captured by ``torch.export.draft_export`` on one example input.

    ``input_shape`` includes the batch; ``example`` defaults to :func:`example_input`.
    """
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        raise NeedsRealWeights(f"torch.export needs {type(model).__name__} with real weights to take its branches")
    floats = (t.dtype for t in tensors if t.is_floating_point())
    x = example if example is not None else example_input(input_shape, next(floats, torch.float32))
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(input_shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidArgument(f"the example input must be a tensor of shape {tuple(input_shape)} (batch first), got {got}")
    was_training = model.training
    model.eval()
    try:
        with _quiet(), user_code(f"the forward of {type(model).__name__}", FORWARD_FIX, exits_only=True):
            exported = torch.export.draft_export(model, (x,))
    except Exception as exc:  # torch raises many kinds; the first line says what
        raise TraceError(f"torch.export cannot capture {type(model).__name__} either: {type(exc).__name__}: "
                         f"{first_line(exc)[:300]}") from exc
    finally:
        model.train(was_training)
    gm = exported.module()
    _drop_guards(gm)
    names, outputs = _names(gm.graph, model)
    return Traced(gm, gm.graph, names, outputs, tuple(input_shape), capture="export")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """draft_export reports every guard it could not prove as a page of warnings; the capture says it in one line."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "torch"]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _drop_guards(gm: fx.GraphModule) -> None:
    """Remove the input guards and runtime asserts (they need real values), then what only they used."""
    graph = gm.graph
    for node in reversed(list(graph.nodes)):
        guard = node.op == "call_module" or node.op == "call_function" and "_assert" in getattr(node.target, "__name__", "")
        if guard and not node.users:
            graph.erase_node(node)
    graph.eliminate_dead_code()
    for name in [n for n, _ in gm.named_children() if n.startswith("_guards")]:
        delattr(gm, name)
    gm.recompile()


def _op(node: fx.Node) -> str:
    """The aten operator without its overload (``conv2d``, ``relu_``), or the function's name."""
    packet = getattr(node.target, "overloadpacket", None)
    return getattr(packet, "__name__", None) or getattr(node.target, "__name__", str(node.target))


def _names(graph: fx.Graph, model: nn.Module) -> tuple[dict[fx.Node, str], dict[str, str]]:
    """Module-path names (see the module docstring) and, per module path, the node holding its output."""
    modules = dict(model.named_modules())
    scoped: list[tuple[fx.Node, str]] = []
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        scoped.append((node, path))
    seen: dict[str, int] = defaultdict(int)
    names: dict[fx.Node, str] = {}
    outputs: dict[str, fx.Node] = {}
    for i, (node, path) in enumerate(scoped):
        if node.op in ("placeholder", "get_attr", "output"):
            base = node.name if node.op != "get_attr" else str(node.target)
        else:
            module = modules.get(path)
            leaf = module is not None and path != "" and not any(True for _ in module.children())
            last = i + 1 == len(scoped) or scoped[i + 1][1] != path
            node.meta["rff_op"] = _op(node)
            base = path if leaf and last else ".".join(p for p in (path, _op(node).strip("_")) if p)
            for prefix in _prefixes(path)[:-1] if leaf else _prefixes(path):  # a leaf's output is the node it names
                outputs[prefix] = node
        count = seen[base]
        seen[base] += 1
        names[node] = base if count == 0 else f"{base}_{count}"
    return names, {path: names[node] for path, node in outputs.items()}


def _prefixes(path: str) -> list[str]:
    """``layer1.0.conv1`` → ``layer1``, ``layer1.0``, ``layer1.0.conv1``."""
    parts = path.split(".") if path else []
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]

