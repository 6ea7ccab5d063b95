"""Fingerprints of the part of a traced graph that a freeze plan depends on.

A plan freezes some layers; whether it fits a model depends on those layers and
on everything that feeds them (their ancestors in the graph), which decides
their receptive fields and so the tagging.  It does not depend on what comes
after, such as the classifier users resize or replace.  So the fingerprint is
taken over the ancestors of the frozen nodes only, one readable line per node in
execution order: node name, op (module class with its geometry hyper-parameters,
or function name with its constant arguments), parameter shapes and inputs.
Weight values never enter it.  The plan stores the lines, so a mismatch names the
first node that differs.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import torch
from torch import fx, nn

from ..trace.meta import read_attr
from ..trace.tracer import Traced

__all__ = ["digest", "first_difference", "graph_lines"]

# Module attributes that decide output shapes and receptive fields (beyond parameter shapes).
_GEOMETRY_ATTRS = ("kernel_size", "stride", "padding", "dilation", "groups", "output_padding", "ceil_mode",
                   "output_size", "scale_factor", "size", "upscale_factor", "downscale_factor")


def graph_lines(traced: Traced, targets: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """Signature lines of ``targets`` and all their ancestors, in execution order; and the targets not found."""
    by_name = {name: node for node, name in traced.names.items()}
    targets = list(targets)
    missing = [t for t in targets if t not in by_name]
    keep: set[fx.Node] = set()
    todo = [by_name[t] for t in targets if t in by_name]
    while todo:
        node = todo.pop()
        if node not in keep:
            keep.add(node)
            todo.extend(node.all_input_nodes)
    modules = dict(traced.root.named_modules())
    inputs = {node: f"input{i}" for i, node in enumerate(n for n in traced.graph.nodes if n.op == "placeholder")}
    label = {node: inputs.get(node, name) for node, name in traced.names.items()}
    lines = tuple(_line(node, label, modules, traced.root) for node in traced.graph.nodes if node in keep)
    return lines, missing


def digest(lines: Sequence[str]) -> str:
    """``sha256:…`` over the lines."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return "sha256:" + h.hexdigest()


def first_difference(expected: Sequence[str], actual: Sequence[str]) -> str:
    """Where two signatures part, in words (``expected`` is the plan's, ``actual`` the model's)."""
    for i, (want, got) in enumerate(zip(expected, actual)):
        if want != got:
            want_name, got_name = want.split(" ", 1)[0], got.split(" ", 1)[0]
            where = f"at node {i + 1} of {len(expected)}"
            if want_name == got_name:
                return f"{where} '{want_name}' differs: the plan has '{want}', the model '{got}'"
            return f"{where} the model has '{got_name}' where the plan has '{want_name}'"
    if len(actual) > len(expected):
        return f"the model has {len(actual) - len(expected)} more node(s), from '{actual[len(expected)]}'"
    if len(actual) < len(expected):
        return f"the model lacks the plan's nodes from '{expected[len(actual)]}'"
    return "the graphs are identical"


def _line(node: fx.Node, label: dict[fx.Node, str], modules: dict[str, nn.Module], root: nn.Module) -> str:
    args = fx.node.map_arg((node.args, node.kwargs), lambda n: _Ref(label[n]))
    if node.op == "placeholder":
        return f"{label[node]} placeholder"
    if node.op == "get_attr":
        return f"{label[node]} get_attr {_shape(read_attr(root, str(node.target)))}"
    if node.op == "call_module":
        module = modules[node.target]
        hyper = " ".join(f"{a}={_const(getattr(module, a))}" for a in _GEOMETRY_ATTRS if hasattr(module, a))
        shapes = " ".join(f"{n}:{_shape(p)}" for n, p in module.named_parameters(recurse=False))
        op = f"{type(module).__name__}[{hyper}]" if hyper else type(module).__name__
        return " ".join(filter(None, (label[node], op, shapes, _call(args))))
    op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{label[node]} {op}{_call(args)}"


class _Ref(str):
    """A node reference inside rendered arguments (printed as ``%name``)."""

    def __repr__(self) -> str:
        return f"%{self}"


def _call(args: tuple[Any, dict[str, Any]]) -> str:
    positional, keywords = args
    parts = [_const(a) for a in positional] + [f"{k}={_const(v)}" for k, v in sorted(keywords.items())]
    return f"({', '.join(parts)})"


def _const(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_const(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_const(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (_Ref, int, float, str, bool, slice, torch.dtype, torch.device, torch.memory_format)) \
            or value is None or value is Ellipsis:
        return repr(value)
    return type(value).__name__  # anything whose repr may hold an address


def _shape(value: Any) -> str:
    return "x".join(map(str, value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
