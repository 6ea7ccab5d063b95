"""The engine against gradient ground truth on real torchvision and timm architectures.

For each model: analyse it, build the positive linearised probe (tests/gradient_rf.py)
and compare, for corner, centre and off-centre units of an early, a middle and the
last local node (plus a global one), the engine's interval with the bounding box of
the non-zero input gradient.

* A unit whose interval lies inside the input must match it exactly.  At the
  border (``border="edges"``) every edge of the interval that lies inside the input
  must be hit exactly and the support must stay within the clipped interval.  That
  holds because in these architectures no unit of any layer reads only padding
  (centred kernels, TF-'SAME' padding smaller than the kernel): a tap chain ending
  on an inside edge runs through real pixels only.  Input sizes are the smallest at
  which the chosen nodes have units with inside edges; a deep node whose receptive
  field is larger than the input is still checked on the edges of its corner units
  (resnet18 ``layer4`` unit (0, 0) reads rows 0…217 of 224).
* A node with status "global" must have a gradient on every row and column.
* A node flagged ``global_context`` sits behind a squeeze-excitation gate: its
  gradient covers the whole input through the gate's global pooling, *and* the
  engine's local interval is what the rest of the graph reads.  Both are checked:
  the full gradient must span the input, and with the pooled (spatially 1×1 or
  flattened) tensors detached, the gradient must match the local interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pytest
import timm
import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import segmentation

from rffsurgery import analyze

from gradient_rf import (GradientProbe, assert_exact, compare, compare_unclipped, default_units, diagonal_units,
                         grow_margins)

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyUNet(nn.Module):
    """Encoder-decoder with both kinds of upsampling and skip concatenations at matching strides."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, 4, 3, padding=1)
        self.down1 = nn.MaxPool2d(2)
        self.enc2 = nn.Conv2d(4, 8, 3, padding=1)
        self.down2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.bottom = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.up2 = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.dec2 = nn.Conv2d(16, 8, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = nn.Conv2d(12, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.down1(e1))
        b = self.bottom(self.down2(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


@dataclass(frozen=True)
class Arch:
    """A model to probe: how to build it, the (square) input side, which nodes, which units."""

    build: Callable[[], nn.Module]
    side: int
    nodes: list[str]  # node names or module paths, as plan[...] takes them
    units: Callable[[Sequence[int]], list[tuple[int, ...]]] = default_units


def _timm(name: str) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False)


ARCHS = {
    "vgg11 (plain)": Arch(lambda: tvm.vgg11(weights=None), 96,
                          ["features.2", "features.10", "features", "avgpool", "classifier.0"]),
    "resnet18 (residual)": Arch(lambda: tvm.resnet18(weights=None), 224,
                                ["maxpool", "layer2.0.downsample.0", "layer3", "layer4", "fc"]),
    "densenet121 (dense)": Arch(lambda: tvm.densenet121(weights=None), 160,
                                ["features.pool0", "features.denseblock1", "features.transition1",
                                 "features.denseblock2.denselayer3", "features.transition2", "features",
                                 "classifier"]),
    "inception_v3 (1x7 kernels)": Arch(lambda: tvm.inception_v3(weights=None, init_weights=False, aux_logits=False),
                                       171, ["maxpool1", "Mixed_5b", "Mixed_6a", "Mixed_6b.branch7x7_2.conv",
                                             "Mixed_6b.branch7x7dbl_4.conv", "Mixed_7c", "fc"]),
    "resnet50 dilated": Arch(lambda: tvm.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]),
                             144, ["layer2", "layer3.1.conv2", "layer4.1.conv2", "layer4"]),
    "mobilenet_v3_small (depthwise, SE)": Arch(lambda: tvm.mobilenet_v3_small(weights=None), 96,
                                               ["features.1", "features.4.block.1", "features.4", "features",
                                                "classifier.0"]),
    "lraspp_mobilenet_v3_large (segmentation)": Arch(
        lambda: segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None), 96,
        ["backbone.4", "backbone.5", "classifier.low_classifier", "classifier.interpolate", "interpolate"]),
    "TinyUNet (transposed conv, upsample, skips)": Arch(TinyUNet, 32, ["down2", "up2", "dec2", "up1", "dec1", "head"],
                                                        diagonal_units),
    "timm resnet18d (deep stem, avg-pool shortcut)": Arch(_timm("resnet18d"), 128,
                                                          ["conv1", "maxpool", "layer2.0.downsample", "layer3",
                                                           "layer4"]),
    "timm tf_efficientnet_b0 (dynamic SAME)": Arch(_timm("tf_efficientnet_b0"), 100,
                                                   ["conv_stem", "blocks.1.0.conv_dw", "blocks.2", "blocks.4", "bn2",
                                                    "global_pool"]),
    "timm convnext_atto (patchify, LayerNorm2d)": Arch(_timm("convnext_atto"), 128,
                                                       ["stem", "stages.1.downsample", "stages.2.blocks.0",
                                                        "stages.3", "head.global_pool"]),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_engine_matches_gradient_support(name: str) -> None:
    arch = ARCHS[name]
    torch.manual_seed(0)
    model = arch.build().eval()
    plan = analyze(model, (3, arch.side, arch.side))
    assert plan.complete, [f"{l.name}: {l.reason}" for l in plan.unknown]
    assert_exact(compare(plan, GradientProbe(model, plan.input_size), arch.nodes, units=arch.units))


def test_tiny_unet_unclipped_intervals() -> None:
    """TinyUNet is translation-equivariant: on a grown input every unit, borders included, is exact."""
    model = TinyUNet().eval()
    plan = analyze(model, (3, 32, 32))
    nodes = ARCHS["TinyUNet (transposed conv, upsample, skips)"].nodes
    margins = grow_margins(plan, nodes, (4, 4))  # two stride-2 layers
    assert_exact(compare_unclipped(plan, model, nodes, margins, units=diagonal_units))
