"""What a person watching a run sees: a start banner and one line per epoch, with an ETA.

Lines go to stderr and to ``OUT/train.log``, each written and flushed at once, so a
run under ``nohup``, a batch scheduler or ``> log 2>&1`` shows its progress while it
runs (the tqdm bar inside an epoch is drawn on terminals only).  Only the main
process of a data-parallel run writes.

The ETA is the mean epoch time of each stage so far times the epochs still planned
(this run's, plus the same per-run counts for the runs still to come).  Before a
stage has finished one epoch its epochs are costed like base epochs, which
overestimates the transfer step (its epochs reuse cached features): the ETA
shrinks once the first transfer epoch is done.  With ``--until-overfit`` the base
epochs still planned are counted up to ``--max-epochs``, an upper bound.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from statistics import mean

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Banner and epoch lines for one experiment of ``runs`` runs with ``per_run`` planned epochs per stage."""

    def __init__(self, log_path: Path | None, runs: int, per_run: dict[str, int], enabled: bool = True) -> None:
        self.log_path, self.runs, self.per_run, self.enabled = log_path, runs, dict(per_run), enabled
        self.runs_done = 0
        self.times: dict[str, list[float]] = {}
        self.started = time.monotonic()
        self._pending: list[str] | None = []  # log lines held back until the first epoch has trained

    def say(self, text: str) -> None:
        """One line to stderr now, and to the log file, flushed.

        Until the first epoch has trained the log lines are held back, so that a run refused
        at the start (a bad model name, a resume with other settings) leaves its folder and an
        existing ``train.log`` exactly as they were.
        """
        if not self.enabled:
            return
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", file=sys.stderr, flush=True)
        line = f"{time.strftime('%Y-%m-%d')} {stamp} {text}\n"
        if self._pending is not None:
            self._pending.append(line)
        else:
            self._write([line])

    def _write(self, lines: list[str]) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.writelines(lines)

    def run_finished(self) -> None:
        self.runs_done += 1

    def eta(self, remaining: dict[str, int]) -> float:
        """Seconds still to go: ``remaining`` epochs per stage in this run, then the runs after it."""
        later = max(0, self.runs - self.runs_done - 1)
        observed = {stage: mean(ts) for stage, ts in self.times.items()}
        fallback = observed.get("base", mean([t for ts in self.times.values() for t in ts] or [0.0]))
        return sum(observed.get(stage, fallback) * (remaining.get(stage, 0) + later * count)
                   for stage, count in self.per_run.items())

    def epoch(self, run: str, stage: str, model: str, epoch: str, loss: float, accuracy: float,
              val_accuracy: float, seconds: float, remaining: dict[str, int]) -> None:
        """Record an epoch's time and print its line."""
        self.times.setdefault(stage, []).append(seconds)
        if self._pending is not None and self.enabled:
            self._write(self._pending)
        self._pending = None
        what = f"{stage} {model}" if model != "shared" else stage
        self.say(f"{run} | {what} epoch {epoch} | loss {loss:.4f} acc {accuracy:.3f} | val acc {val_accuracy:.3f} "
                 f"| {seconds:.1f}s | ETA {format_duration(self.eta(remaining))}")
