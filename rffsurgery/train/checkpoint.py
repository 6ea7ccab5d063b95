"""Atomic checkpoints that are safe to load.

A checkpoint is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a crash or Ctrl-C at any moment leaves either the old or
the new checkpoint, never half of one.  It holds only tensors and plain Python values
and is read with ``torch.load(weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import RffError

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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(_unreadable(path, exc)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a rffsurgery training checkpoint (expected format {FORMAT})")
    return payload


def _unreadable(path: Path, exc: Exception) -> str:
    """Our own reason: torch's message for a refused object advises ``weights_only=False``, which we never do."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    elif not zipfile.is_zipfile(path):
        reason = "not a complete torch archive: truncated, overwritten or never a checkpoint"
    elif isinstance(exc, pickle.UnpicklingError):
        reason = "it holds objects other than tensors and plain values, which are never unpickled"
    else:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"checkpoint {path} is corrupt or unreadable ({reason}). It was left as it is: "
            "move it away to start this run again, or fix the path.")
