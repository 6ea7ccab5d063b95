"""The data one HTML report carries: the analysis JSON, and what the page draws besides it.

The page computes every interval itself from the nodes' ``grid`` and ``maps`` — the
same fields ``analyze --json`` writes (:meth:`~rffsurgery.analysis.LayerRF.to_dict`) —
so what it draws is what the JSON says, for any layout and any period (upsampling
phases, windows).  Pictures travel as raw bytes in base64 (the user's image as RGB,
ERF heat maps as one byte per pixel): the page decodes them itself, so it needs no
image loader, no ``data:`` URL and no network.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ...analysis.result import Plan
from ...formats import stamp
from ...tags import Tag
from ..table import to_dict

if TYPE_CHECKING:
    from ...analysis.erf import ErfResult
    from ...plan import FreezePlan, Schedule

__all__ = ["MIN_EPOCHS", "report_data", "schedule_horizon"]

MIN_EPOCHS = 10
"""The freeze matrix shows at least this many epochs of an open-ended schedule (``every k from s``, no stop)."""


def report_data(analysis: Plan, *, pixels: torch.Tensor | None = None, image_name: str | None = None,
                erf: "ErfResult | None" = None, freeze_plan: "FreezePlan | None" = None,
                tags: Sequence[Tag] = ()) -> dict[str, Any]:
    """The report's JSON: ``to_dict(analysis)`` (every node) with, per node, ``main`` and ``tag``; then the extras.

    ``pixels`` is the image as the model sees it, uint8 ``(3, H, W)``; ``erf`` adds each
    computed node's heat map and squares; ``freeze_plan`` adds its fingerprint and its
    schedule as a matrix (frozen nodes × epochs).
    """
    data = to_dict(analysis, every_node=True)
    main = {l.name for l in analysis.main_layers()}
    reasons = {t.name: t.reason for t in tags}
    for node in data["nodes"]:
        node["main"] = node["name"] in main
        node["tag"] = reasons.get(node["name"])
    return {
        **stamp("html-report", 1),
        "analysis": data,
        "image": _image(pixels, image_name) if pixels is not None else None,
        "erf": _erf(erf) if erf is not None else None,
        "plan": _plan(freeze_plan) if freeze_plan is not None else None,
    }


def _bytes(values: torch.Tensor) -> str:
    return base64.b64encode(values.contiguous().numpy().tobytes()).decode("ascii")


def _image(pixels: torch.Tensor, name: str | None) -> dict[str, Any]:
    """RGB bytes row by row (``H × W × 3``)."""
    _, height, width = pixels.shape
    return {"name": name, "height": height, "width": width, "rgb": _bytes(pixels.permute(1, 2, 0))}


def _erf(result: "ErfResult") -> dict[str, Any]:
    """Per node: the summary (unit, RF interval, squares, area ratios) and the heat map as bytes, max = 255."""
    nodes = {}
    for n in result.nodes:
        peak = float(n.heatmap.max()) or 1.0
        heat = (n.heatmap / peak * 255).round().to(torch.uint8)
        nodes[n.node] = {**n.summary(), "height": heat.shape[0], "width": heat.shape[1], "heat": _bytes(heat)}
    return {"model": result.model, "input_size": list(result.input_size), "weights": result.weights,
            "data": result.data, "nodes": nodes}


def schedule_horizon(schedule: "Schedule") -> int:
    """How many epochs show the whole schedule: to its last frozen epoch, or a few repeats of an open-ended one."""
    if schedule.every is None:
        return max(schedule.epochs)
    if schedule.stop is not None:
        return schedule.stop
    return max(MIN_EPOCHS, schedule.start + 3 * schedule.every)


def _plan(plan: "FreezePlan") -> dict[str, Any]:
    """What the page shows of a freeze plan: fingerprint, policy, schedule (as a matrix), the frozen nodes."""
    epochs = schedule_horizon(plan.schedule)
    return {
        "model": plan.model_name,
        "fingerprint": plan.fingerprint,
        "policy": plan.policy,
        "policy_options": plan.policy_options,
        "schedule": plan.schedule.to_dict(),
        "schedule_text": plan.schedule.describe(),
        "open_ended": plan.schedule.every is not None and plan.schedule.stop is None,
        "frozen_epochs": [e for e in range(1, epochs + 1) if plan.schedule.is_frozen(e)],
        "epochs": epochs,
        "nodes": list(plan.frozen_nodes),
        "tagged": [t["node"] for t in plan.tagged],
        "parameters": len(plan.parameter_names),
        "bn_mode": plan.bn_mode,
    }
