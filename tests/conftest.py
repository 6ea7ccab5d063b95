"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

# The default run is deterministic: each property test draws the same examples every time,
# so CI cannot fail at random.  `python -m pytest --hypothesis-profile random` draws fresh
# ones (add `--hypothesis-seed N` to replay a run); hypothesis's plugin loads the profile
# named on the command line after this default.
settings.register_profile("ci", derandomize=True)
settings.register_profile("random", derandomize=False)
settings.load_profile("ci")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run torch on one thread for the module, then restore.

    The gradient probes are batch-1 float64 convolutions: a second OpenMP thread
    gains little on them, and when the two cores are shared it spins and loses a
    lot (inception_v3 at 139 px: forward 0.24 s on one thread, 1.3 s on two).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A 50×70 PNG of random colours: an image that is neither square nor the model's size."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)).save(path)
    return path
