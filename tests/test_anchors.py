"""Published receptive fields, reproduced (documentation tests).

Numbers come from the papers (docs/rff-method.md, "published anchors"), not from
our own output: Araujo, Norris & Sim, "Computing receptive fields of convolutional
neural networks" (Distill, 2019), Table 2 (r0 / S0 / P0 of TF-slim models at 224),
and the RFF paper's Table 1 (AlexNet, the RF at every layer from the top).
torchvision's VGG16 and Inception v3 have TF-slim's geometry; torchvision's
ResNet50 is "v1.5" (stride in the 3×3 conv), whose 427 / 32 / 213 the issue states.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from torch import nn

from rffsurgery import analyze
from rffsurgery.cli import main

# model, module, (RF, effective stride, effective padding) — one number for both axes
PUBLISHED = [
    ("vgg16", "features", (212, 32, 90)),  # Araujo et al. Table 2, vgg_16
    ("resnet50", "layer4", (427, 32, 213)),  # torchvision's v1.5 (TF-slim v1 differs: 483 / 32 / 239)
]


@pytest.mark.parametrize(("model", "module", "expected"), PUBLISHED)
def test_published_anchor_via_api(model: str, module: str, expected: tuple[int, int, int]) -> None:
    layer = analyze(model)[module]
    assert (layer.rf, layer.stride, layer.padding) == tuple((v, v) for v in expected)


@pytest.mark.parametrize(("model", "module", "expected"), PUBLISHED)
def test_published_anchor_via_cli(model: str, module: str, expected: tuple[int, int, int]) -> None:
    result = CliRunner().invoke(main, ["analyze", model])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.endswith(f"= end of {module}")]
    assert len(rows) == 1, result.output
    assert tuple(int(v) for v in rows[0][3:6]) == expected  # node, op, output, RF, stride, padding, notes


def test_inception_v3_matches_araujo() -> None:
    """Araujo et al. Table 2, inception_v3: 1311 / 32 / 618 at the last mixed block."""
    layer = analyze("inception_v3")["Mixed_7c"]
    assert (layer.rf, layer.stride, layer.padding) == ((1311, 1311), (32, 32), (618, 618))


def _alexnet_v2() -> list[nn.Module]:
    """TF-slim alexnet_v2's feature layers: 'VALID' convolution 1 and pools, 'SAME' convs 2–5."""
    return [
        nn.Conv2d(3, 64, 11, stride=4),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.Conv2d(384, 384, 3, padding=1),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.MaxPool2d(3, 2),
    ]


# RFF paper Table 1, from the top: the region of each layer's output that one unit of the top
# layer sees (1 at the top itself, 195 at the input).
TABLE_1_FROM_TOP = [1, 3, 5, 7, 9, 19, 23, 47, 195]


def test_alexnet_table_1_chain() -> None:
    """Every suffix of the chain, analysed on its own, sees Table 1's region below it."""
    layers = _alexnet_v2()
    for above, expected in enumerate(TABLE_1_FROM_TOP[1:], start=1):
        suffix = layers[len(layers) - above:]
        channels = next((m.in_channels for m in suffix if isinstance(m, nn.Conv2d)), 256)  # pools keep channels
        top = analyze(nn.Sequential(*suffix), (channels, 256, 256)).output()
        assert top.rf == (expected, expected), f"top {above} layers"


def test_alexnet_v2_matches_araujo() -> None:
    """Araujo et al. Table 2, alexnet_v2: 195 / 32 / 64."""
    top = analyze(nn.Sequential(*_alexnet_v2()), (3, 224, 224)).output()
    assert (top.rf, top.stride, top.padding) == ((195, 195), (32, 32), (64, 64))
