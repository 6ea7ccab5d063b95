"""Text, CSV and JSON renderings of a :class:`~rffsurgery.analysis.Plan`."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Sequence

from .analysis import LayerRF, Plan

if TYPE_CHECKING:
    from .tags import Tag

__all__ = ["to_csv", "to_json", "to_table"]


def _num(x: Fraction | int | str | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    return str(x)


def _per_axis(values: Iterable) -> str:
    """One number when every axis agrees (square models), else ``H x W``."""
    texts = [_num(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else " x ".join(texts)


def _flags(layer: LayerRF) -> str:
    parts = []
    ends = [a for a in layer.aliases if "." not in a]
    if ends:
        parts.append(f"= end of {', '.join(ends)}")
    if layer.status in ("unknown", "misaligned"):
        parts.append(f"{layer.status.upper()}: {layer.reason}")
    if layer.global_context:
        parts.append("+global context")
    parts.extend(layer.notes)
    return "; ".join(parts)


def _cells(layer: LayerRF, tagged: dict[str, str]) -> list[str]:
    shape = "x".join(map(str, layer.shape)) if layer.shape else "-"
    if layer.status in ("ok", "global"):
        rf, stride, padding = _per_axis(layer.rf), _per_axis(layer.stride), _per_axis(layer.padding)
    else:
        rf = stride = padding = "?" if layer.status in ("unknown", "misaligned") else "-"
    mark = "*" if layer.name in tagged else ""
    return [mark + layer.name, layer.op, shape, rf, stride, padding, _flags(layer)]


def to_table(plan: Plan, every_node: bool = False, tags: Sequence["Tag"] = ()) -> str:
    """A fixed-width table: node, op, output shape (C x H x W), RF, stride, padding, notes.

    Tagged (RF-expanding) layers are marked with ``*``.
    """
    layers = list(plan) if every_node else plan.main_layers()
    tagged = {t.name: t.reason for t in tags}
    header = ["node", "op", "output", "RF", "stride", "padding", "notes"]
    rows = [header] + [_cells(l, tagged) for l in layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    right = {3, 4, 5}

    def fmt(row: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells + [row[-1]]).rstrip()

    size = "x".join(map(str, plan.input_size))
    shown = "every node" if every_node else f"{len(layers)} main layers of {len(plan)} nodes (--all for every node)"
    lines = [f"{plan.model_name}  input {size}  {shown}", fmt(header)]
    lines += [fmt(r) for r in rows[1:]]
    if tags:
        lines.append(f"\n* {len(tags)} RF-expanding layer(s) tagged: " + ", ".join(tagged))
    unknown = plan.unknown
    if unknown:
        lines.append(f"\n{len(unknown)} op(s) without a geometry rule; nodes after them are reported as unknown:")
        lines += [f"  {l.name} ({l.op}): {l.reason}" for l in unknown]
    return "\n".join(lines)


def to_json(plan: Plan, every_node: bool = True) -> str:
    return json.dumps(plan.to_dict(every_node=every_node), indent=2)


def to_csv(plan: Plan, every_node: bool = True) -> str:
    """One row per node; per-axis columns ``rf_0, rf_1…`` (axis 0 = H, 1 = W)."""
    layers = list(plan) if every_node else plan.main_layers()
    axes = range(plan.n_axes)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "op", "shape", "status", *(f"{k}_{a}" for k in ("rf", "stride", "padding") for a in axes),
                     "global_context", "reason"])
    for l in layers:
        local = l.status in ("ok", "global")
        cols = [*(l.rf if local else ("",) * plan.n_axes), *(_num(s) if local else "" for s in l.stride),
                *(_num(p) if local else "" for p in l.padding)]
        writer.writerow([l.name, l.op, "x".join(map(str, l.shape or ())), l.status, *cols, l.global_context, l.reason])
    return out.getvalue()
