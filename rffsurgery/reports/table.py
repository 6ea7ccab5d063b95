"""Text, CSV and JSON renderings of a :class:`~rffsurgery.analysis.Plan`."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from typing import Iterable, Sequence

from ..analysis.macs import Costs, node_costs
from ..analysis.result import LayerRF, Plan
from ..tags import Tag

__all__ = ["si", "to_csv", "to_dict", "to_json", "to_table"]


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


def _rf(layer: LayerRF) -> str:
    """RF per axis; ``36–40`` where it varies over the output positions (after upsampling)."""
    return _per_axis(f"{lo}–{hi}" if lo != hi else hi for lo, hi in zip(layer.rf_min, layer.rf))


def si(n: int | None) -> str:
    """``118.0M``-style count: what a reader compares at a glance (``-`` for none)."""
    if n is None:
        return "-"
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.4g}{unit}"
    return str(n)


def _flags(layer: LayerRF) -> str:
    parts = []
    ends = [a for a in layer.aliases if "." not in a]
    if ends:
        parts.append(f"= end of {', '.join(ends)}")
    if layer.status in ("unknown", "misaligned"):
        parts.append(f"{layer.status.upper()}: {layer.reason}")
    if layer.global_context:
        parts.append("+global context")
    if any(layer.windowed) and layer.status == "ok":
        parts.append(f"windowed (period {_per_axis(w or '-' for w in layer.windowed)})")
    parts.extend(layer.notes)
    return "; ".join(parts)


def _cells(layer: LayerRF, tagged: dict[str, str], costs: Costs) -> list[str]:
    shape = "x".join(map(str, layer.shape)) if layer.shape else "-"
    if layer.status in ("ok", "global"):
        rf, stride, padding = _rf(layer), _per_axis(layer.stride), _per_axis(layer.padding)
    else:
        rf = stride = padding = "?" if layer.status in ("unknown", "misaligned") else "-"
    mark = "*" if layer.name in tagged else ""
    params = f"{costs.params[layer.name]:,}" if costs.params.get(layer.name) else ""
    macs = si(costs.macs[layer.name]) if costs.macs.get(layer.name) else ""
    return [mark + layer.name, layer.op, shape, rf, stride, padding, params, macs, _flags(layer)]


def _totals(costs: Costs) -> str:
    macs = (f"{si(costs.total_macs)} MACs per sample (convolutions and matrix products)"
            if costs.total_macs is not None else f"MACs not counted: {costs.macs_unavailable}")
    return f"total: {costs.total_params:,} parameters, {macs}"


def _specialised(plan: Plan) -> str:
    """What the graph holds for, when not every input of this size: the header says so."""
    if plan.capture == "export":
        return "  (captured by torch.export: holds for the branches its example input took, at this size)"
    if plan.capture == "onnx":
        return "  (the ONNX file's dynamic dims set to this size)" if plan.shape_specialised else ""
    return "  (traced for this size only: the model's code branches on shapes)" if plan.shape_specialised else ""


def to_table(plan: Plan, every_node: bool = False, tags: Sequence["Tag"] = ()) -> str:
    """A fixed-width table: node, op, output shape (C x H x W), RF, stride, padding, params, MACs, notes.

    Tagged (RF-expanding) layers are marked with ``*``; an RF that varies over the
    output positions (after upsampling) reads ``min–max``.
    """
    layers = list(plan) if every_node else plan.main_layers()
    tagged = {t.name: t.reason for t in tags}
    costs = node_costs(plan)
    header = ["node", "op", "output", "RF", "stride", "padding", "params", "MACs", "notes"]
    rows = [header] + [_cells(l, tagged, costs) for l in layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    right = {3, 4, 5, 6, 7}

    def fmt(row: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells + [row[-1]]).rstrip()

    size = "x".join(map(str, plan.input_size))
    shown = "every node" if every_node else f"{len(layers)} main layers of {len(plan)} nodes (--all for every node)"
    only = _specialised(plan)
    lines = [f"{plan.model_name}  input {size}  {shown}{only}", fmt(header)]
    lines += [fmt(r) for r in rows[1:]]
    lines.append(_totals(costs))
    if plan.complete and not plan.local_layers():
        lines.append(f"\nno spatial axes: every layer of {plan.model_name} mixes the whole input (an MLP), so every "
                     "receptive field is global and there is no RF to grow or freeze by")
    if tags:
        lines.append(f"\n* {len(tags)} RF-expanding layer(s) tagged: " + ", ".join(tagged))
    unknown = plan.unknown
    if unknown:
        lines.append(f"\n{len(unknown)} op(s) without a geometry rule; nodes after them are reported as unknown:")
        lines += [f"  {l.name} ({l.op}): {l.reason}" for l in unknown]
    return "\n".join(lines)


def to_dict(plan: Plan, every_node: bool = True) -> dict:
    """The plan's JSON form with parameters (``n_params``) and MACs per node and in total."""
    data = plan.to_dict(every_node=every_node)
    costs = node_costs(plan)
    for node in data["nodes"]:
        node["n_params"] = costs.params.get(node["name"], 0)
        node["macs"] = costs.macs.get(node["name"]) if costs.total_macs is not None else None
    data["total_params"] = costs.total_params
    data["total_macs"] = costs.total_macs
    if costs.macs_unavailable:
        data["macs_unavailable"] = costs.macs_unavailable
    return data


def to_json(plan: Plan, every_node: bool = True) -> str:
    return json.dumps(to_dict(plan, every_node=every_node), indent=2)


def to_csv(plan: Plan, every_node: bool = True) -> str:
    """One row per node; per-axis columns ``rf_0, rf_1…`` (axis 0 = H, 1 = W)."""
    layers = list(plan) if every_node else plan.main_layers()
    axes = range(plan.n_axes)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    costs = node_costs(plan)
    writer.writerow(["name", "op", "shape", "status",
                     *(f"{k}_{a}" for k in ("rf", "rf_min", "outer_extent", "stride", "padding") for a in axes),
                     "n_params", "macs", "global_context", "reason"])
    for l in layers:
        local = l.status in ("ok", "global")
        blank = ("",) * plan.n_axes
        cols = [*(l.rf if local else blank), *(l.rf_min if local else blank), *(l.outer_extent if local else blank),
                *(_num(s) if local else "" for s in l.stride), *(_num(p) if local else "" for p in l.padding)]
        writer.writerow([l.name, l.op, "x".join(map(str, l.shape or ())), l.status, *cols,
                         costs.params.get(l.name, 0), costs.macs.get(l.name, ""), l.global_context, l.reason])
    return out.getvalue()
