"""Built-in models: the base CNN of the RFF paper (Table 3), and two 1-D audio nets (``audio.py``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .audio import M5, TCN

__all__ = ["BUILTIN", "RFFBaseCNN"]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class RFFBaseCNN(nn.Module):
    """The RFF paper's base CNN (Table 3), for 32×32 CIFAR images.

    Layers, numbered as in the paper (1-based): 1 Conv 32 · 2 BN · 3 ReLU · 4 Conv 32 ·
    5 ReLU · 6 MaxPool 2 · 7 Conv 64 · 8 BN · 9 ReLU · 10 Conv 64 · 11 ReLU ·
    12 MaxPool 2 · 13 Conv 64 · 14 BN · 15 ReLU · 16 Conv 64 · 17 ReLU · 18 Flatten ·
    19 Dense 64 · 20 ReLU · 21 Dense ``num_classes``.  ``features.i`` is paper layer
    ``i + 1`` (``features.6`` is layer 7), so plans read like the paper.  All convs
    are 3×3 'same'.
    """

    default_input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 8, in_channels: int = 3, width: int = 32, hidden: int = 64,
                 image_size: int = 32) -> None:
        super().__init__()
        w2 = 2 * width
        self.features = nn.Sequential(
            _conv(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(), _conv(width, width), nn.ReLU(),
            nn.MaxPool2d(2),
            _conv(width, w2), nn.BatchNorm2d(w2), nn.ReLU(), _conv(w2, w2), nn.ReLU(),
            nn.MaxPool2d(2),
            _conv(w2, w2), nn.BatchNorm2d(w2), nn.ReLU(), _conv(w2, w2), nn.ReLU(),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(w2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


BUILTIN: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "rff-base-cnn": (RFFBaseCNN, RFFBaseCNN.default_input_size),
    "m5": (M5, M5.default_input_size),
    "tcn": (TCN, TCN.default_input_size),
}
