"""The per-epoch log of one run, ``log.csv`` and ``log.json``: one row per epoch and model, with wall time.

Rewritten after every epoch (atomically), so an interrupted run's log is complete up to
its last checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from ..files import write_text
from .loop import EpochStats

__all__ = ["COLUMNS", "log_row", "write_logs"]

COLUMNS = ("stage", "model", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
           "images_per_second")


def write_logs(workdir: Path, history: Sequence[dict[str, Any]]) -> None:
    """Per-epoch log of one run as CSV and JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text(workdir / "log.csv", buffer.getvalue())
    write_text(workdir / "log.json", json.dumps(list(history), indent=1) + "\n")


def log_row(stage: str, model: str, epoch: int, stats: EpochStats, val: tuple[float, float]) -> dict[str, Any]:
    """One row of the log: the epoch's training figures and its validation loss and accuracy."""
    return {"stage": stage, "model": model, "epoch": epoch, "train_loss": stats.loss,
            "train_accuracy": stats.accuracy, "val_loss": val[0], "val_accuracy": val[1],
            "seconds": stats.seconds, "images_per_second": stats.images_per_second}
