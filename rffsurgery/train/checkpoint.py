"""Atomic checkpoints that are safe to load.

A checkpoint is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a crash or Ctrl-C at any moment leaves either the old or
the new checkpoint, never half of one.  It holds only tensors and plain Python values
and is read with ``torch.load(weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import RffError
from ..files import atomic_output, load_tensors
from ..formats import read_stamp, stamp

__all__ = ["CheckpointError", "KIND", "load_checkpoint", "save_checkpoint"]

KIND = "train-checkpoint"
VERSION = 1


class CheckpointError(RffError, RuntimeError):
    """A checkpoint that cannot be read or belongs to a different run; the file is left untouched."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the version tag) atomically to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save({**stamp(KIND, VERSION), **payload}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`CheckpointError` if it is unusable."""
    payload = load_tensors(path, CheckpointError, "checkpoint",
                           "It was left as it is: move it away to start this run again, or fix the path.")
    read_stamp(payload, KIND, VERSION, CheckpointError, f"a rffsurgery training checkpoint ({path})")
    return payload
