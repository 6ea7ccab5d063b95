"""A unit's receptive field (and its ERF) drawn on the user's own image, as the model sees it.

The image is resized to cover the model's input and centre-cropped to it
(:func:`rffsurgery.data.images.read_image`), so pixel (r, c) of the drawing is input pixel
(r, c) of the model and the box is the unit's exact interval from ``analyze``
(unclipped: the part beyond the image is padding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..analysis import Plan, check_unit, find_layer
from ..analysis.erf import NodeErf
from ..data.images import read_image
from ..errors import InvalidArgument
from .plot import draw_rf_box, pyplot, save_figure

__all__ = ["draw_overlay"]


def draw_overlay(image: str | Path, plan: Plan, node: str, unit: Sequence[int], path: str | Path,
                 erf: NodeErf | None = None, force: bool = False) -> Path:
    """Draw the unit's RF box (and ``erf``'s heat map) on ``image`` resized as the model sees it."""
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
