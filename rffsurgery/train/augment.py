"""Batch augmentation on the training device: horizontal flip, rotation and zoom.

One implementation for every data source (tensors or folders), run after the batch
reaches the device, so it costs no DataLoader worker time and stays deterministic:
its random numbers come from the epoch's CPU generator.  Rotation and zoom are one
affine resampling (bilinear, edge pixels repeated like Keras' ``fill_mode="nearest"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..limits import check_fields

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """``flip``: mirror half the images; ``rotation``: up to ± degrees; ``zoom``: scale in [1-z, 1+z]."""

    flip: bool = False
    rotation: float = 0.0
    zoom: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def active(self) -> bool:
        return self.flip or self.rotation > 0 or self.zoom > 0

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        if self.flip:
            flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.rotation > 0 or self.zoom > 0:
            angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(self.rotation)
            scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * self.zoom
            cos, sin = angle.cos() / scale, angle.sin() / scale
            theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                                 torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
            grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return x
