"""Built-in 1-D models (raw audio), so that 1-D receptive fields have reference models in the zoo.

* ``m5``: Dai et al., *Very deep convolutional neural networks for raw waveforms*
  (ICASSP 2017), network M5: an 80-sample stride-4 stem, then 3-tap convs and
  4× max-pools, global average pooling and a linear classifier.
* ``tcn``: a temporal convolutional network (Bai, Kolter & Koltun, 2018): residual
  blocks of two 3-tap convs dilated 1, 2, 4, 8, … with 'same' padding.
Both take 1 × 16000 inputs (one second at 16 kHz).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["M5", "TCN"]


class M5(nn.Module):
    default_input_size = (1, 16000)

    def __init__(self, num_classes: int = 35, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(1, width, 80, stride=4), nn.BatchNorm1d(width), nn.ReLU(),
                                   nn.MaxPool1d(4)]
        widths = [width, width, 2 * width, 2 * width]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Conv1d(cin, cout, 3), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class _TemporalBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=dilation, dilation=dilation)
        self.relu = nn.ReLU()
        self.downsample = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.downsample(x))


class TCN(nn.Module):
    default_input_size = (1, 16000)

    def __init__(self, num_classes: int = 35, width: int = 32, levels: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, width, 16, stride=8)
        self.blocks = nn.Sequential(*(_TemporalBlock(width, width, 2 ** i) for i in range(levels)))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))
