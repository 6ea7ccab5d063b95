"""Input sizes of any rank: the parser, the zoo's defaults for video and 1-D models, and the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.errors import InvalidArgument
from rffsurgery.models.zoo import parse_size, resolve

IMAGE, VIDEO, AUDIO = (3, 224, 224), (3, 16, 112, 112), (1, 16000)


@pytest.mark.parametrize("text, default, size", [
    ("1,16000", IMAGE, (1, 16000)),                # commas: channels first, as given, any rank
    ("3,224,224", AUDIO, (3, 224, 224)),
    ("3,16,112,112", IMAGE, (3, 16, 112, 112)),
    ((1, 100), IMAGE, (1, 100)),
    ("224", IMAGE, (3, 224, 224)),                  # one number: every image side, channels from the default
    (160, VIDEO, (3, 16, 160, 160)),                # … a video keeps its frame count
    ("8000", AUDIO, (1, 8000)),                     # … a 1-D model's length
    ("224x192", IMAGE, (3, 224, 192)),              # 'x': the last spatial sizes
    ("224x192", VIDEO, (3, 16, 224, 192)),
    ("8x160x160", VIDEO, (3, 8, 160, 160)),
    ("3x64x64", IMAGE, (3, 64, 64)),                # one more than the spatial axes: channels first
    (None, VIDEO, VIDEO),
])
def test_parse_size(text, default, size):
    assert parse_size(text, default) == size


@pytest.mark.parametrize("text", ["big", "1x2x3x4x5", "0,16000", "", "3,,"])
def test_parse_size_refuses(text):
    with pytest.raises(InvalidArgument, match="input size"):
        parse_size(text, IMAGE)


@pytest.mark.parametrize("name, size", [("r3d_18", (3, 16, 112, 112)), ("mvit_v2_s", (3, 16, 224, 224)),
                                        ("swin3d_t", (3, 32, 224, 224)), ("s3d", (3, 128, 224, 224)),
                                        ("resnet50", (3, 224, 224)), ("m5", (1, 16000))])
def test_zoo_default_sizes(name, size):
    """torchvision video weights: crop size and clip length (``clip_len`` of their docs)."""
    assert resolve(name).input_size == size


def test_video_model_analyses_at_its_clip_size():
    plan = analyze("r3d_18")
    assert plan.complete and plan.input_size == VIDEO
    assert plan["stem.0"].rf == (3, 7, 7)  # a 3×7×7 conv over T, H, W


def test_cli_one_dimensional_input():
    result = CliRunner().invoke(main, ["analyze", "m5", "--input-size", "1,16000"])
    assert result.exit_code == 0, result.output
    assert "input 1x16000" in result.output
    assert "features.0" in result.output and " 80 " in result.output  # the 80-sample stem
