"""The ``paper`` policy: the weight layers that first work at each new, coarser resolution on the main path.

This is the RFF paper's choice; the precise rule is in :mod:`rffsurgery.tags`.
"""

from __future__ import annotations

from fractions import Fraction

from ..analysis.result import Plan
from .common import Tag, coarser, fmt_resolution, is_weight_layer, main_path, resolution

__all__ = ["paper"]


def _fresh(plan: Plan) -> dict[str, bool]:
    """Nodes with no weight layer between them and the op that produced their resolution."""
    fresh: dict[str, bool] = {}
    for layer in plan:
        res = resolution(layer)
        if res is None:
            continue
        same = [i for i in layer.inputs if i in fresh and resolution(plan.layers[i]) == res]
        produced = not same
        fresh[layer.name] = produced or all(fresh[i] and not is_weight_layer(plan.layers[i]) for i in same)
    return fresh


def paper(plan: Plan, include_stem: bool = False, include_shortcuts: bool = False) -> list[Tag]:
    image = tuple(Fraction(1) for _ in range(plan.n_axes))
    seen = [image]
    waiting: tuple[Fraction, ...] | None = None  # newest resolution whose first weight layer is still to come
    stem_pending = True
    levels: list[tuple[Fraction, ...]] = []
    tags: list[Tag] = []
    path = main_path(plan)
    for name in path:
        layer = plan.layers[name]
        res = resolution(layer)
        if res is None:
            continue
        if coarser(res, seen):
            seen.append(res)
            waiting = res
        if not is_weight_layer(layer):
            continue
        if stem_pending:
            stem_pending = False
            inputs = [resolution(plan.layers[i]) for i in layer.inputs]
            if all(r == image for r in inputs if r is not None) and not include_stem:
                waiting = None  # the stem reads the image: not tagged unless asked
                continue
        if waiting is not None and res == waiting:
            produced = all(resolution(plan.layers[i]) != res for i in layer.inputs)
            verb = "produces" if produced else "first consumes"
            tags.append(Tag(name, f"main path: {verb} stride {fmt_resolution(res)}"))
            levels.append(res)
            waiting = None
    if include_shortcuts:
        on_path, tagged = set(path), {t.name for t in tags}
        fresh = _fresh(plan)
        for layer in plan:
            res = resolution(layer)
            if (layer.name not in on_path and layer.name not in tagged and is_weight_layer(layer)
                    and res in levels and fresh.get(layer.name)):
                tags.append(Tag(layer.name, f"off the main path: first weight layer at stride {fmt_resolution(res)}"))
    order = {name: i for i, name in enumerate(plan.layers)}
    return sorted(tags, key=lambda t: order[t.name])
