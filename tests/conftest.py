"""Shared fixtures."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


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
