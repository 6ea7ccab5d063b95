"""A unit's RF drawn on an image: the right pixels, the right errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.data.images import read_image


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    pixels = np.zeros((90, 120, 3), np.uint8)
    pixels[:, :, 0] = np.arange(120, dtype=np.uint8)[None]  # red grows along the columns
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_image_is_resized_and_cropped_as_the_model_sees_it(photo: Path) -> None:
    """90×120 covering 60×60: scaled by 2/3 to 60×80, then the middle 60 columns (10…69)."""
    image = read_image(photo, (60, 60))
    assert tuple(image.shape) == (3, 60, 60)
    red = image[0, 30].float()
    assert abs(float(red[0]) - 15) <= 1.5 and abs(float(red[-1]) - 104) <= 1.5  # input cols 15 and 104


def test_overlay_cli(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "rf.png"
    args = ["analyze", "resnet18", "--input-size", "64", "--node", "layer2", "--unit", "1,2",
            "--overlay", str(photo), "--out-image", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    (r0, r1), (c0, c1) = analyze("resnet18", 64)["layer2"].interval((1, 2))
    assert f"rows {r0}…{r1}" in done.output and out.stat().st_size > 10_000
    assert CliRunner().invoke(main, args).exit_code == 1  # exists: needs --force
    with_erf = CliRunner().invoke(main, [*args, "--force", "--with-erf"])
    assert with_erf.exit_code == 0, with_erf.output
    usage = CliRunner().invoke(main, ["analyze", "resnet18", "--overlay", str(photo), "--node", "layer2",
                                      "--unit", "1,2"])
    assert usage.exit_code == 2 and "--out-image" in usage.output
    bad = CliRunner().invoke(main, ["analyze", "resnet18", "--node", "fc", "--unit", "0",
                                    "--overlay", str(photo), "--out-image", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and "no local receptive field" in bad.output
