"""What the rewrites share: which modules a model calls, glob selection, records of what changed.

Candidates come from the fx trace, not from ``named_modules()``: a Linear that is
only a parameter holder (``MultiheadAttention.out_proj`` is used through
``F.linear``) is never called as a module, and replacing it would break nothing
visibly yet change nothing either.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterable

from torch import fx, nn

from ..analysis.macs import count_params
from ..errors import RffError
from ..errors import names as as_names
from ..trace.tracer import Traced

__all__ = ["Change", "Rewrite", "RewriteError", "Skip", "called_modules", "count_params", "globs", "select"]


class RewriteError(RffError, ValueError):
    """A rewrite cannot be applied as asked; the message says why and what would work."""


@dataclass(frozen=True)
class Change:
    """One replaced module: where, what it was and what it became (``note``: e.g. init fidelity)."""

    path: str
    before: str
    after: str
    note: str = ""


@dataclass(frozen=True)
class Skip:
    """A selected module left as it was, and why."""

    path: str
    reason: str


@dataclass
class Rewrite:
    """The result of one rewrite: the new model and the recipe ``step`` that rebuilds its architecture."""

    model: nn.Module
    step: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def call_nodes(traced: Traced, kind: type) -> list[fx.Node]:
    """``call_module`` nodes whose module is a ``kind``, in execution order (a shared module once)."""
    modules = dict(traced.graph_module.named_modules())
    seen: dict[str, fx.Node] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], kind):
            seen.setdefault(node.target, node)
    return list(seen.values())


def called_modules(traced: Traced, kind: type) -> list[str]:
    """Paths of the ``kind`` modules the forward calls, in execution order."""
    return [node.target for node in call_nodes(traced, kind)]


def globs(patterns: Iterable[str] | str | None) -> list[str]:
    """Layer globs as a list; a single string is one glob, not a sequence of one-character globs."""
    return as_names(patterns, "layer globs")


def select(paths: list[str], patterns: Iterable[str], what: str) -> list[str]:
    """The ``paths`` matching any glob (``fnmatch`` on module paths: ``layer4.*.conv2``), in their order.

    Every pattern must match something, so a typo fails instead of silently
    rewriting less than asked.
    """
    patterns = globs(patterns)
    for pattern in patterns:
        if not fnmatch.filter(paths, pattern):
            shown = ", ".join(paths[:12]) + (f", … ({len(paths)} in all)" if len(paths) > 12 else "")
            raise RewriteError(f"'{pattern}' matches no {what}; the model calls these: {shown or 'none'}")
    return [p for p in paths if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
