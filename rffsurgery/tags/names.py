"""The ``names`` policy: explicit node names, module paths or glob patterns."""

from __future__ import annotations

import fnmatch
from typing import Sequence

from ..analysis.result import Plan
from ..errors import names as as_names
from .common import Tag, TagError

__all__ = ["names"]


def names(plan: Plan, patterns: Sequence[str] = ()) -> list[Tag]:
    patterns = as_names(patterns, "the 'names' policy", TagError)  # one pattern, not its characters
    if not patterns:
        raise TagError("the 'names' policy needs at least one node name or glob pattern")
    aliases = plan.traced.module_outputs
    chosen: dict[str, str] = {}
    for pattern in patterns:
        hits = [l.name for l in plan if fnmatch.fnmatchcase(l.name, pattern) and l.params]
        hits += [aliases[a] for a in aliases if fnmatch.fnmatchcase(a, pattern) and plan.layers[aliases[a]].params]
        if not hits:
            raise TagError(f"pattern {pattern!r} matches no node with parameters in {plan.model_name}")
        for h in hits:
            chosen.setdefault(h, f"selected by {pattern!r}")
    return [Tag(l.name, chosen[l.name]) for l in plan if l.name in chosen]
