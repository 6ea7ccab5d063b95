"""Several splits × several seeds in one call, then the aggregate report.

Runs live in ``OUT/split-<name>/seed-<k>/`` (checkpoint, logs, plan, curves); the
report goes to ``OUT/report.{json,txt,md}`` and ``OUT/deltas.png``; progress lines go to
stderr and ``OUT/train.log``.  With ``resume`` finished runs are read back, interrupted
ones continue from their checkpoint.  Launched by ``torchrun``, every process runs this
and the main one writes (see :mod:`.distributed`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ...data.base import Source, data_settings
from ...data.splits import Split
from ...errors import InvalidArgument, OutputExists
from ...files import prepare_folder
from ...reports.training import plot_curves, write_report
from ...usercode import FORWARD_FIX, user_code
from ..distributed import session
from ..progress import Progress
from .aggregate import aggregate
from .rff import ProtocolConfig, Stage, per_run_epochs, run_protocol

__all__ = ["REPORT_FILES", "run_experiment"]

REPORT_FILES = ("report.json", "report.txt", "report.md", "deltas.png")  # the experiment's own files in --out, beside the runs


def run_experiment(cfg: ProtocolConfig, source: Source, splits: Sequence[Split], seeds: Sequence[int],
                   out: str | Path, *, resume: bool = False, stop_after: Stage | None = None, plots: bool = True,
                   log: Callable[[str], None] | None = None, verbose: bool = True) -> dict[str, Any] | None:
    """Run the protocol for every (split, seed); returns the report (``None`` when stopped early).

    ``log`` receives each finished run's summary line (main process only); the banner and
    per-epoch lines go to stderr and ``OUT/train.log`` (``progress=False`` silences them).
    """
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
    with session(cfg.device) as world, user_code(f"the model {cfg.model}", FORWARD_FIX, exits_only=True):
        main = world.main
        progress = Progress(out / "train.log", len(splits) * len(seeds), per_run_epochs(cfg), enabled=main and verbose)
        progress.say(f"rffsurgery train: {cfg.model} on {source.name}, split(s) {', '.join(s.name for s in splits)} × "
                     f"seed(s) {', '.join(map(str, seeds))}; {world.size} process(es); output {out}")
        results = []
        for split in splits:
            for seed in seeds:
                workdir = out / f"split-{split.name}" / f"seed-{seed}"
                result = run_protocol(cfg, lambda: source.protocol_data(split, seed, cfg.holdout), seed, workdir,
                                      split=split.name, resume=resume, stop_after=stop_after, progress=progress,
                                      data_settings=data_settings(source, split))
                progress.run_finished()
                if result is None:
                    continue
                if plots and main:
                    plot_curves(json.loads((workdir / "log.json").read_text()), workdir / "curves.png")
                if log is not None and main:
                    controls = "".join(f" {arm} {result[f'{arm}_accuracy']:.3f}" for arm in result["arms"][2:])
                    log(f"split {split.name} seed {seed}: n={result['n']} normal {result['normal_accuracy']:.3f} "
                        f"rff {result['rff_accuracy']:.3f}{controls} delta {result['delta']:+.3f} "
                        f"(RFF/normal epoch time, one unpaired measurement: {result['epoch_time_ratio']:.2f}; "
                        f"{result['wall_seconds']:.0f} s)")
                results.append(result)
        if stop_after is not None:
            return None
        meta = {"source": source.name, "data": settings, "config": cfg.to_dict(),
                "splits": [s.name for s in splits], "seeds": list(seeds), "world_size": world.size}
        report = {"meta": meta, **aggregate(results)}
        if main:
            write_report(out, report, plots)
        world.barrier()  # the report is on disk before any process returns
        return report
