"""Several splits × several seeds in one call, then the aggregate report.

Runs live in ``OUT/split-<name>/seed-<k>/`` (checkpoint, logs, plan, curves); the
report goes to ``OUT/report.{json,txt}`` and ``OUT/deltas.png``.  With ``resume``
finished runs are read back, interrupted ones continue from their checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InvalidArgument, OutputExists
from ..files import prepare_folder
from .data import Source, data_settings
from .protocol import ProtocolConfig, Stage, run_protocol
from .report import plot_curves, write_report
from .splits import Split

__all__ = ["REPORT_FILES", "run_experiment"]

REPORT_FILES = ("report.json", "report.txt", "deltas.png")  # the experiment's own files in --out, beside the runs


def run_experiment(cfg: ProtocolConfig, source: Source, splits: Sequence[Split], seeds: Sequence[int],
                   out: str | Path, *, resume: bool = False, stop_after: Stage | None = None, plots: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Run the protocol for every (split, seed); returns the report (``None`` when stopped early)."""
    out = Path(out)
    if not seeds or not splits:
        raise InvalidArgument("need at least one split and one seed")
    prepare_folder(out, option="--out")
    if not resume:
        for name in REPORT_FILES:
            if (out / name).exists():
                raise OutputExists(f"{out / name} already exists: pass --resume to continue that experiment "
                                   "(its report is then rewritten), or choose another --out folder")
    settings = data_settings(source)
    results = []
    for split in splits:
        for seed in seeds:
            workdir = out / f"split-{split.name}" / f"seed-{seed}"
            result = run_protocol(cfg, lambda: source.protocol_data(split, seed, cfg.holdout), seed, workdir,
                                  split=split.name, resume=resume, stop_after=stop_after, data_settings=settings)
            if result is None:
                continue
            if plots:
                plot_curves(json.loads((workdir / "log.json").read_text()), workdir / "curves.png")
            if log is not None:
                log(f"split {split.name} seed {seed}: n={result['n']} normal {result['normal_accuracy']:.3f} "
                    f"rff {result['rff_accuracy']:.3f} delta {result['delta']:+.3f} "
                    f"(RFF/normal epoch time {result['epoch_time_ratio']:.2f})")
            results.append(result)
    if stop_after is not None:
        return None
    meta = {"source": source.name, "data": settings, "config": cfg.to_dict(), "splits": [s.name for s in splits],
            "seeds": list(seeds)}
    return write_report(out, results, meta, plots)
