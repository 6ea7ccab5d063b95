"""A unit's receptive field (and its ERF) drawn on the user's own image, as the model sees it.

The image is resized to cover the model's input and centre-cropped to it
(:func:`rffsurgery.images.read_image`), so pixel (r, c) of the drawing is input pixel
(r, c) of the model and the box is the unit's exact interval from ``analyze``
(unclipped: the part beyond the image is padding).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import InvalidArgument

if TYPE_CHECKING:
    from .analysis import LayerRF, Plan
    from .erf import NodeErf

__all__ = ["check_unit", "describe_unit", "draw_overlay", "find_layer"]


def find_layer(plan: "Plan", node: str) -> "LayerRF":
    """``plan[node]``, with an unknown name as a user error that lists close matches."""
    try:
        return plan[node]
    except KeyError as exc:
        raise InvalidArgument(str(exc.args[0]) + "; see the names in 'rffsurgery analyze MODEL --all'") from None


def check_unit(layer: "LayerRF", unit: Sequence[int]) -> tuple[int, ...]:
    """``unit`` as a tuple, if it is a position of ``layer``'s output with a local RF on every axis."""
    unit = tuple(unit)
    spatial = tuple(layer.shape[1:]) if layer.shape is not None else ()
    if layer.status != "ok" or any(a is None for a in layer.axes):
        raise InvalidArgument(f"node {layer.name} has no local receptive field on every axis ({layer.status}); "
                              "choose a node before global pooling")
    if len(spatial) != len(layer.axes):
        raise InvalidArgument(f"the output of {layer.name} is {'x'.join(map(str, spatial or ()))} per channel, not laid "
                              "out as (C, H, W) like the input; choose a convolutional node")
    if len(unit) != len(spatial) or any(not 0 <= u < n for u, n in zip(unit, spatial)):
        raise InvalidArgument(f"unit {','.join(map(str, unit))} is not a position of {layer.name}, whose output is "
                              f"{'x'.join(map(str, spatial))}: give {len(spatial)} indices, each below its size")
    return unit


def describe_unit(plan: "Plan", node: str, unit: Sequence[int]) -> str:
    """One line: the exact (unclipped) input interval of one unit, per axis."""
    layer = find_layer(plan, node)
    unit = check_unit(layer, unit)
    names = ("rows", "cols") if plan.n_axes == 2 else tuple(f"axis {a}" for a in range(plan.n_axes))
    parts = [f"{name} {lo}…{hi} ({hi - lo + 1} px)" for name, (lo, hi) in zip(names, layer.interval(unit))]
    size = "x".join(map(str, plan.input_size))
    return (f"{plan.model_name} {layer.name} unit ({', '.join(map(str, unit))}): " + ", ".join(parts)
            + f" of the input {size} (unclipped; indices outside 0…size−1 are padding)")


def draw_overlay(image: str | Path, plan: "Plan", node: str, unit: Sequence[int], path: str | Path,
                 erf: "NodeErf | None" = None, force: bool = False) -> Path:
    """Draw the unit's RF box (and ``erf``'s heat map) on ``image`` resized as the model sees it."""
    from .images import read_image
    from .plot import draw_rf_box, pyplot, save_figure

    layer = find_layer(plan, node)
    unit = check_unit(layer, unit)
    if plan.n_axes != 2:
        raise InvalidArgument(f"overlays need an image model (2 spatial axes), {plan.model_name} has {plan.n_axes}")
    pixels = read_image(image, plan.input_size[1:]).permute(1, 2, 0).numpy()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    ax.imshow(pixels, interpolation="nearest")
    if erf is not None:
        heat = (erf.heatmap / (float(erf.heatmap.max()) or 1.0)).numpy()
        ax.imshow(heat, cmap="magma", alpha=heat * 0.85, interpolation="nearest")
    (r0, r1), (c0, c1) = layer.interval(unit)
    draw_rf_box(ax, layer.interval(unit), pixels.shape[:2], f"RF rows {r0}…{r1}, cols {c0}…{c1}")
    ax.set_xlim(-0.5, pixels.shape[1] - 0.5)
    ax.set_ylim(pixels.shape[0] - 0.5, -0.5)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.7)
    what = "receptive field" + (" and ERF (|gradient|, brighter = more)" if erf is not None else "")
    ax.set_title(f"{plan.model_name} {layer.name} unit {','.join(map(str, unit))}: {what}\n"
                 f"{Path(image).name} as the model sees it ({'x'.join(map(str, plan.input_size[1:]))})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, force, "--out-image")
