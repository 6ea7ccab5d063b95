"""Built-in models: the base CNN of the RFF paper (Table 3), torchvision's ResNet-18 with a stem for 28–32 px
inputs (the paper's experiment 3 at small scale), the three CNNs of paper 002 (docs/rewrites.md) and two 1-D
audio nets (``audio.py``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .audio import M5, TCN

__all__ = ["BUILTIN", "P002ResNet", "P002SmallCNN", "P002VGG", "RFFBaseCNN", "resnet18_small_input"]


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


def resnet18_small_input(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """torchvision's ResNet-18 (random weights) with its stem adapted to 28–32 px images: ``resnet18-32``.

    The ImageNet stem (7×7 stride-2 conv, then a 3×3 stride-2 max-pool) would shrink a 32 px image to 8 px
    before the first stage; here ``conv1`` is a 3×3 stride-1 conv and the max-pool is kept, so the four
    stages work at 16, 8, 4 and 2 px (14, 7, 4, 2 at 28 px).  Keeping the max-pool keeps the paper's
    experiment-3 geometry: the ``paper`` policy tags the four stage-entry layers ``layer1.0.conv1`` (first
    conv after the max-pool) and ``layer2/3/4.0.conv1`` (the stride-2 convs opening stages 2–4), the
    analogues of ResNet-50's Keras layers 8, 40, 82, 144.  ``image_size`` is accepted for a uniform
    signature (the global average pool makes any size from 17 px up work).
    """
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    return model


# -- paper 002 (docs/rewrites.md) ---------------------------------------------------------------
# The paper's tables list the layers without widths; the widths, the PReLU → BatchNorm order
# and the dropout rates are those of the authors' notebooks (github.com/konks/meta,
# Conv2d.ipynb), which give exactly the parameter counts the paper reports:
# 88,170 / 357,265 / 1,573,902 for 10 classes at 3×32×32.


def _unit(cin: int, cout: int) -> list[nn.Module]:
    """Conv 3×3 'same' → PReLU → BatchNorm, the paper's building unit."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.PReLU(), nn.BatchNorm2d(cout)]


def _fc_head(in_features: int, hidden: int, num_classes: int) -> list[nn.Module]:
    """The paper's ``FC → Dropout → FC`` head (with the notebooks' PReLU after the hidden FC)."""
    return [nn.Flatten(), nn.Linear(in_features, hidden), nn.PReLU(), nn.Dropout(0.2), nn.Linear(hidden, num_classes)]


class P002SmallCNN(nn.Module):
    """Paper 002's small CNN: 3 conv units (6, 16, 32 maps), two 2×2 max-pools, FC 40, FC classes.

    88,170 parameters for 10 classes at 3×32×32; ``--meta-groups 4`` replaces its FC 2048 → 40.
    """

    default_input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_unit(in_channels, 6), *_unit(6, 16), nn.MaxPool2d(2), nn.Dropout2d(0.1),
            *_unit(16, 32), nn.MaxPool2d(2), nn.Dropout2d(0.1),
        )
        self.classifier = nn.Sequential(*_fc_head(32 * (image_size // 4) ** 2, 40, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class P002VGG(nn.Module):
    """Paper 002's VGG-like CNN: conv units 16, 32 | pool | 64, 64 | pool | 128, 128 | adaptive pool 3×3.

    357,265 parameters for 10 classes; ``--meta-groups 16 --meta-out 8`` replaces its FC 1152 → 64.
    ``image_size`` is accepted for a uniform signature (the adaptive pool makes any size work).
    """

    default_input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_unit(in_channels, 16), *_unit(16, 32), nn.MaxPool2d(2), nn.Dropout2d(0.1),
            *_unit(32, 64), *_unit(64, 64), nn.MaxPool2d(2), nn.Dropout2d(0.1),
            *_unit(64, 128), *_unit(128, 128), nn.AdaptiveAvgPool2d(3), nn.Dropout2d(0.1),
        )
        self.classifier = nn.Sequential(*_fc_head(128 * 3 * 3, 64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class P002ResBlock(nn.Module):
    """``x + body(x)``, body = two conv units and a Dropout2d(0.1) (no projection: width is kept)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_unit(width, width), *_unit(width, width), nn.Dropout2d(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class P002ResNet(nn.Module):
    """Paper 002's ResNet-like CNN: stem 16, 32 | pool | 16 blocks of 32 | unit 64, pool | 16 blocks of 64.

    1,573,902 parameters for 10 classes; the head pools to 4×4 and runs FC 1024 → 64 → classes.
    """

    default_input_size = (3, 32, 32)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, blocks: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_unit(in_channels, 16), *_unit(16, 32), nn.MaxPool2d(2), nn.Dropout2d(0.1))
        self.stage1 = nn.Sequential(*(P002ResBlock(32) for _ in range(blocks)))
        self.transition = nn.Sequential(*_unit(32, 64), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*(P002ResBlock(64) for _ in range(blocks)))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(4), *_fc_head(64 * 4 * 4, 64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stage2(self.transition(self.stage1(self.stem(x)))))


BUILTIN: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "rff-base-cnn": (RFFBaseCNN, RFFBaseCNN.default_input_size),
    "resnet18-32": (resnet18_small_input, (3, 32, 32)),
    "p002-small-cnn": (P002SmallCNN, P002SmallCNN.default_input_size),
    "p002-vgg": (P002VGG, P002VGG.default_input_size),
    "p002-resnet": (P002ResNet, P002ResNet.default_input_size),
    "m5": (M5, M5.default_input_size),
    "tcn": (TCN, TCN.default_input_size),
}
