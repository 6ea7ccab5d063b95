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

__all__ = ["CheckpointError", "KIND", "load_checkpoint", "refuse_changes", "save_checkpoint"]

KIND = "train-checkpoint"
VERSION = 1


class CheckpointError(RffError, RuntimeError):
    """A checkpoint that cannot be read or belongs to a different run; the file is left untouched."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the version tag) atomically to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save({**stamp(KIND, VERSION), **payload}, tmp)


def refuse_changes(path: Path, recorded: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """Refuse to resume the run of ``path`` when a setting that defines it differs, naming each: old → new.

    ``recorded`` holds the settings the run was started with (``None``: written without
    them, by an older version, so nothing can be vouched for); values are compared as
    JSON would store them (a tuple equals a list).
    """
    if recorded is None:
        raise CheckpointError(f"{path} does not record the settings its run was made with (an older rffsurgery): "
                              "resuming could mix two experiments; use another --out folder")
    old, new = _plain(recorded), _plain(now)
    changed = [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]
    if changed:
        what = "; ".join(f"{k}: {_shown(old.get(k))} → {_shown(new.get(k))}" for k in changed)
        raise CheckpointError(f"{path} belongs to a different run ({what}); use another --out folder, "
                              "or resume with the original settings")


def _plain(value: Any) -> Any:
    """Tuples as lists and nested dicts flattened to ``a.b`` keys, so that one changed field is named."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            inner = _plain(item)
            if isinstance(inner, dict) and inner:
                flat.update({f"{key}.{k}" if key not in ("config", "data") else k: v for k, v in inner.items()})
            else:
                flat[key] = inner
        return flat
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _shown(value: Any) -> str:
    """A setting as a user wrote it: paths and names without quotes, lists comma-separated."""
    if isinstance(value, list):
        return ",".join(map(_shown, value)) or "(none)"
    return "(not set)" if value is None else str(value)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; :class:`CheckpointError` if it is unusable."""
    payload = load_tensors(path, CheckpointError, "checkpoint",
                           "It was left as it is: move it away to start this run again, or fix the path.")
    read_stamp(payload, KIND, VERSION, CheckpointError, f"a rffsurgery training checkpoint ({path})")
    return payload
