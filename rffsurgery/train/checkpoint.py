"""Atomic checkpoints that are safe to load.

A checkpoint is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a crash or Ctrl-C at any moment leaves either the old or
the new checkpoint, never half of one.  It holds only tensors and plain Python values
and is read with ``torch.load(weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import RffError
from ..files import load_tensors

__all__ = ["CheckpointError", "FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "rffsurgery.train-checkpoint/1"


class CheckpointError(RffError, RuntimeError):
    """A checkpoint that cannot be read or belongs to a different run; the file is left untouched."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`CheckpointError` if it is unusable."""
    payload = load_tensors(path, CheckpointError, "checkpoint",
                           "It was left as it is: move it away to start this run again, or fix the path.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a rffsurgery training checkpoint (expected format {FORMAT})")
    return payload
