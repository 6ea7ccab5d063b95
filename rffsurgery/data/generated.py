"""The built-in generated dataset: CIFAR-sized shapes with an optional "occlusive" class cue.

Offline, deterministic and fast (a few milliseconds per hundred images), it makes the
situation the RFF method claims to fix: a salient element that is present in every
*training* image of a class but absent at validation and transfer time.

Exact recipe for one ``S×S`` image (``S = 32`` by default) of class ``c``; every random
number comes from a ``torch.Generator`` seeded from ``(seed, role, c)``:

1. **Background**: colour ``b ~ U[0,1]^3`` plus a linear gradient of random direction and
   amplitude ``U[0, 0.2]``.
2. **Shape** (the only thing that identifies the class): centre ``(cx, cy) ~ U[0.35 S, 0.65 S]²``,
   radius ``R ~ U[0.2 S, 0.3 S]``, rotation ``θ ~ U[-20°, 20°]``, colour
   ``f = (b + U[0.3, 0.7]) mod 1`` per channel (so it always contrasts with the background
   and colour carries no class information).  A pixel belongs to the shape when the class's
   predicate holds at ``u = ((x-cx)cos θ + (y-cy)sin θ)/R``, ``v = (-(x-cx)sin θ + (y-cy)cos θ)/R``,
   evaluated on a 2× supersampled grid of pixel centres and averaged (anti-aliasing).
   The 16 predicates are in ``SHAPES`` (disk, ring, square, frame, diamond, triangle, plus,
   cross, hbars, vbars, checker, dots, crescent, star, bullseye, tee).
3. **Cue** (training images of base classes only, strength ``α ∈ [0, 1]``): a square of side
   ``round(5 S / 32)`` px at one of 8 border anchors (the 4 corners and 4 edge midpoints, 2 px
   inset; anchor = index of ``c`` in ``SHAPES`` mod 8) in a class-specific saturated colour
   (hue = index · 0.618 mod 1) is alpha-blended over the image: ``x ← (1-α) x + α · colour``.
   ``α = 1`` is an opaque, perfectly predictive shortcut; ``α = 0`` is no cue.
4. **Noise**: Gaussian, σ = 0.05; clamp to [0, 1], round to uint8.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..errors import InvalidArgument
from ..limits import check, check_fields
from ..seeding import generator
from .base import ImageTensors, ProtocolData, check_classes, pick
from .splits import Split

__all__ = ["GENERATED_SPLITS", "SHAPES", "GeneratedSource", "generated", "render"]


def _box(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs())


def _rho(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v)


SHAPES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "disk": lambda u, v: _rho(u, v) < 1,
    "ring": lambda u, v: (_rho(u, v) < 1) & (_rho(u, v) > 0.6),
    "square": lambda u, v: _box(u, v) < 0.8,
    "frame": lambda u, v: (_box(u, v) < 0.85) & (_box(u, v) > 0.5),
    "diamond": lambda u, v: u.abs() + v.abs() < 1,
    "triangle": lambda u, v: (v < 0.7) & (u.abs() < (v + 0.8) * 0.6),
    "plus": lambda u, v: ((u.abs() < 0.25) | (v.abs() < 0.25)) & (_box(u, v) < 0.9),
    "cross": lambda u, v: (((u - v).abs() < 0.35) | ((u + v).abs() < 0.35)) & (_box(u, v) < 0.8),
    "hbars": lambda u, v: (_box(u, v) < 0.85) & (torch.sin(3 * math.pi * v) > 0),
    "vbars": lambda u, v: (_box(u, v) < 0.85) & (torch.sin(3 * math.pi * u) > 0),
    "checker": lambda u, v: (_box(u, v) < 0.85) & (torch.sin(2.5 * math.pi * u) * torch.sin(2.5 * math.pi * v) > 0),
    "dots": lambda u, v: (_box(u * 1.5, v * 1.5).round() <= 1)
    & ((u * 1.5 - (u * 1.5).round()) ** 2 + (v * 1.5 - (v * 1.5).round()) ** 2 < 0.12),
    "crescent": lambda u, v: (_rho(u, v) < 1) & (_rho(u - 0.45, v) > 0.75),
    "star": lambda u, v: _rho(u, v) < 0.55 + 0.4 * torch.cos(5 * torch.atan2(v, u)),
    "bullseye": lambda u, v: (_rho(u, v) < 1) & (torch.floor(_rho(u, v) * 3.5) % 2 == 0),
    "tee": lambda u, v: ((v + 0.6).abs() < 0.25) & (u.abs() < 0.85) | (u.abs() < 0.22) & (v > -0.6) & (v < 0.85),
}

GENERATED_SPLITS: dict[str, Split] = {
    "g.1": Split("g.1", tuple(list(SHAPES)[:8]), tuple(list(SHAPES)[8:10])),
    "g.2": Split("g.2", tuple(list(SHAPES)[8:]), tuple(list(SHAPES)[:2])),
}


def _cue_colour(index: int) -> Tensor:
    return torch.tensor(colorsys.hsv_to_rgb(index * 0.618034 % 1.0, 1.0, 1.0))


def _cue_box(index: int, size: int) -> tuple[slice, slice]:
    side, inset = max(2, round(5 * size / 32)), 2
    far, mid = size - inset - side, (size - side) // 2
    anchors = [(inset, inset), (inset, far), (far, inset), (far, far),
               (inset, mid), (far, mid), (mid, inset), (mid, far)]
    top, left = anchors[index % len(anchors)]
    return slice(top, top + side), slice(left, left + side)


def _render_class(name: str, count: int, g: torch.Generator, size: int, cue: float) -> Tensor:
    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(count, *shape, generator=g)

    background = uniform(0, 1, 3)
    foreground = (background + uniform(0.3, 0.7, 3)) % 1.0
    centre = uniform(0.35 * size, 0.65 * size, 2)
    radius = uniform(0.2 * size, 0.3 * size)
    theta = uniform(-math.pi / 9, math.pi / 9)
    slope = uniform(0, 0.2)
    direction = uniform(0, 2 * math.pi)

    fine = (torch.arange(2 * size) + 0.5) / 2  # supersampled pixel centres
    ys, xs = fine.view(1, -1, 1), fine.view(1, 1, -1)
    dx, dy = xs - centre[:, 0, None, None], ys - centre[:, 1, None, None]
    cos, sin, r = theta.cos()[:, None, None], theta.sin()[:, None, None], radius[:, None, None]
    mask = SHAPES[name]((dx * cos + dy * sin) / r, (-dx * sin + dy * cos) / r).float()
    mask = torch.nn.functional.avg_pool2d(mask[:, None], 2)  # (N, 1, S, S)

    pix = (torch.arange(size) + 0.5) / size - 0.5
    ramp = direction.cos()[:, None, None] * pix.view(1, 1, -1) + direction.sin()[:, None, None] * pix.view(1, -1, 1)
    back = background[:, :, None, None] + (slope[:, None, None] * ramp)[:, None]
    image = back * (1 - mask) + foreground[:, :, None, None] * mask
    if cue > 0:
        index = list(SHAPES).index(name)
        rows, cols = _cue_box(index, size)
        patch = image[:, :, rows, cols]
        image[:, :, rows, cols] = (1 - cue) * patch + cue * _cue_colour(index)[None, :, None, None]
    image = image + 0.05 * torch.randn(image.shape, generator=g)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def render(classes: Sequence[str], per_class: int, seed: int, role: str, cue: float = 0.0,
           size: int = 32) -> ImageTensors:
    """``per_class`` images of each shape in ``classes`` (labels = position in ``classes``)."""
    check("cue", cue)
    check_classes("the generated dataset", list(SHAPES), classes)
    images = [_render_class(c, per_class, generator(seed, role, c), size, cue) for c in classes]
    labels = torch.arange(len(classes)).repeat_interleave(per_class)
    return ImageTensors(torch.cat(images), labels, tuple(classes))


@dataclass(frozen=True)
class GeneratedSource:
    """The generated dataset as a protocol source; the cue is drawn on base training images only."""

    per_class: int = 250
    cue: float = 0.0
    image_size: int = 32
    name: str = "generated"
    classes: tuple[str, ...] = tuple(SHAPES)
    splits: dict[str, Split] = field(default_factory=lambda: dict(GENERATED_SPLITS))

    def __post_init__(self) -> None:
        check_fields(self)

    def protocol_data(self, split: Split, seed: int, fraction: float = 0.2) -> ProtocolData:
        check_classes(self.name, self.classes, split.base + split.transfer)
        n_val = round(fraction * self.per_class)
        if n_val < 1 or n_val >= self.per_class:
            raise InvalidArgument(f"{self.per_class} images per class are too few to hold out {fraction:.0%}")
        n_train, size = self.per_class - n_val, self.image_size
        return ProtocolData(
            render(split.base, n_train, seed, "base-train", self.cue, size),
            render(split.base, n_val, seed, "base-val", 0.0, size),
            render(split.transfer, n_train, seed, "transfer-train", 0.0, size),
            render(split.transfer, n_val, seed, "transfer-val", 0.0, size),
        )

    def sample(self, count: int, seed: int) -> ImageTensors:
        """``count`` freshly drawn images of any shape (no cue), picked with ``seed``."""
        return pick(render(self.classes, -(-count // len(self.classes)), seed, "erf", 0.0, self.image_size), count,
                    seed)


def generated(per_class: int = 250, cue: float = 0.0) -> GeneratedSource:
    """The registry's entry point: ``per_class`` images of each shape, the cue drawn with strength ``cue``."""
    return GeneratedSource(per_class=per_class, cue=cue)
