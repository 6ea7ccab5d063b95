"""The ``growth`` policy: weight layers scored by how much they enlarge the receptive field."""

from __future__ import annotations

from ..analysis.result import Plan
from ..limits import check
from .common import Tag, TagError, is_weight_layer

__all__ = ["growth"]


def growth(plan: Plan, metric: str = "pixels", top_k: int | None = 4, threshold: float | None = None) -> list[Tag]:
    if metric not in ("pixels", "ratio"):
        raise TagError(f"growth metric must be 'pixels' or 'ratio', not {metric!r}")
    check("top_k", top_k, TagError)
    check("threshold", threshold, TagError)
    if threshold is None and top_k is None:
        raise TagError("growth needs top_k or a threshold")
    scored: list[tuple[float, int, str, str]] = []
    for order, layer in enumerate(plan):
        if not is_weight_layer(layer) or layer.status != "ok" or any(a is None for a in layer.axes):
            continue
        before = [plan.layers[i] for i in layer.inputs if plan.layers[i].status == "ok"]
        if not before:
            continue
        r_in = max(max(a.size for a in l.axes if a is not None) for l in before)
        r_out = max(a.size for a in layer.axes)
        score = float(r_out - r_in) if metric == "pixels" else r_out / r_in
        scored.append((score, order, layer.name, f"RF {r_in} -> {r_out}"))
    if threshold is not None:
        chosen = [s for s in scored if s[0] >= threshold]
    else:
        chosen = sorted(scored, key=lambda s: (-s[0], s[1]))[:top_k]
    unit = "px" if metric == "pixels" else "x"
    return [Tag(name, f"growth {score:g}{unit} ({why})", score) for score, _, name, why in sorted(chosen, key=lambda s: s[1])]
