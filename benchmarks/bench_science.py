"""Does RFF improve transfer on real images? The pre-registered experiments of docs/results/ (issue 19), one command each.

``--experiment`` picks one (docs/results/README.md has the pre-registration):

* ``exp1``    — the paper's experiment 1 on Fashion-MNIST: base CNN, n = 4 base epochs, the ten
  7/3 splits ``hard.*`` (transfer task: three of the five confusable garments) × seeds 0–2,
  500 training images per class; arms normal, RFF, layer-matched placebo and A/A control;
* ``exp2``    — the same with experiment 2's n (the onset of overfitting, patience 2);
* ``resnet``  — the paper's experiment 3 analogue: ``resnet18-32`` (torchvision's ResNet-18, stem for
  32 px; the ``paper`` policy tags its four stage-entry layers), otherwise as ``exp1``;
* ``rewrite`` — paper 002's rewrite experiment on Fashion-MNIST: ``p002-small-cnn`` against
  ``--meta-groups 4``, ``--conv3d-filters 8`` and both combined, 1,000 training images per class,
  20 epochs, seeds 0–4.

Runs go seed-major (every split at seed 0, then at seed 1, …), so a stopped experiment has
whole seeds; the same command continues where it stopped (checkpoints in ``--out``).
The report (``report.json``, ``report.txt``, plots) is written to ``--out`` and, with
``--publish DIR``, copied there (the tables, JSON and PNGs of docs/results/).
``--quick`` is a small smoke run of the same path (2 splits × 2 seeds, 50 images per class,
1 base epoch) for CI.

Needs the real files: ``apt-get install dataset-fashion-mnist`` (→ /usr/share/datasets/fashion-mnist)
or ``--data-root``.

Run: ``python benchmarks/bench_science.py --experiment exp1 --threads 1 [--quick] [--publish docs/results/exp1]``
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import OUT, parser, write_result

from rffsurgery.cli.train import parse_seeds
from rffsurgery.data import open_dataset
from rffsurgery.reports.rewrite import format_table as rewrite_table
from rffsurgery.reports.training import format_table, write_report
from rffsurgery.train import DatasetNotFound, ProtocolConfig, RewriteConfig, resolve_splits
from rffsurgery.train.checkpoint import load_checkpoint
from rffsurgery.train.protocols.aggregate import aggregate
from rffsurgery.train.protocols.experiment import run_experiment
from rffsurgery.train.protocols.rewrite import run_rewrite_experiment

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One pre-registered experiment: its configuration, splits, seeds and images per class."""

    config: ProtocolConfig | RewriteConfig
    splits: str
    seeds: str
    per_class: int


_RFF = ProtocolConfig(model="rff-base-cnn", epochs=4, transfer_epochs=50, device="cpu", probe="lbfgs", control="both")
PRESETS = {
    "exp1": Preset(_RFF, "hard.*", "0-2", 500),
    "exp2": Preset(dataclasses.replace(_RFF, until_overfit=True, max_epochs=30, patience=2), "hard.*", "0-2", 500),
    "resnet": Preset(dataclasses.replace(_RFF, model="resnet18-32"), "hard.*", "0-2", 500),
    "rewrite": Preset(RewriteConfig(model="p002-small-cnn", meta_groups=4, conv3d_filters=8, combined=True,
                                    epochs=20, batch_size=128, device="cpu"), "", "0-4", 1000),
}


def quick(preset: Preset) -> Preset:
    """The smoke-test version of a preset: the same code path at a few seconds per run."""
    if isinstance(preset.config, RewriteConfig):
        return Preset(dataclasses.replace(preset.config, epochs=2), "", "0-1", 50)
    return Preset(dataclasses.replace(preset.config, epochs=1, max_epochs=3, transfer_epochs=10),
                  "hard.t-shirt+pullover+dress,hard.dress+coat+shirt", "0-1", 50)


def run_rff(preset: Preset, source, out: Path, seeds: list[int], report_only: bool) -> tuple[dict[str, Any], str]:
    """Every (seed, split) run, seed-major, resumable; then the aggregate report."""
    splits = resolve_splits(preset.splits, source.splits)
    results = []
    for seed in seeds:
        for split in splits:
            if report_only:
                path = out / f"split-{split.name}" / f"seed-{seed}" / "checkpoint.pt"
                state = load_checkpoint(path) if path.exists() else {}
                results += [state["result"]] if state.get("stage") == "done" else []
                continue
            results += run_experiment(preset.config, source, [split], [seed], out, resume=True, plots=False,
                                      log=print)["runs"]
    # each call above wrote a one-run report into out; the experiment's report replaces it
    meta = {"source": source.name, "per_class": source.per_class, "config": preset.config.to_dict(),
            "splits": [s.name for s in splits], "seeds": seeds,
            "classes": {s.name: {"base": s.base, "transfer": s.transfer} for s in splits}}
    report = write_report(out, {"meta": meta, **aggregate(results)})
    return report, format_table(report)


def run_rewrite(preset: Preset, source, out: Path, seeds: list[int]) -> tuple[dict[str, Any], str]:
    report = run_rewrite_experiment(preset.config, source, seeds, out, resume=True, log=print)
    return report, rewrite_table(report)


def publish(out: Path, target: Path) -> None:
    """Copy the experiment's report files (not checkpoints or per-run logs) to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(out.iterdir()):
        if path.is_file() and path.suffix in (".json", ".txt", ".md", ".png"):
            shutil.copy2(path, target / path.name)
    print(f"published the report files of {out} to {target}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--experiment", choices=list(PRESETS), required=True)
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--seeds", default=None, help="override the preset's seeds (e.g. 0-1)")
    p.add_argument("--splits", default=None, help="override the preset's splits (names, globs, comma list)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/out/science/<experiment>[-quick]")
    p.add_argument("--report-only", action="store_true", help="report the finished runs, train nothing")
    p.add_argument("--publish", type=Path, default=None, help="copy the report files to this folder")
    args = p.parse_args()
    preset = quick(PRESETS[args.experiment]) if args.quick else PRESETS[args.experiment]
    if args.splits:
        preset = dataclasses.replace(preset, splits=args.splits)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or OUT / "science" / (args.experiment + ("-quick" if args.quick else ""))
    seeds = parse_seeds(args.seeds or preset.seeds)
    try:
        source = open_dataset("fashion-mnist", args.data_root, per_class=preset.per_class)
    except DatasetNotFound as exc:
        sys.exit(f"bench_science needs the real Fashion-MNIST files: {exc} (or pass --data-root DIR)")
    start = time.perf_counter()
    if isinstance(preset.config, RewriteConfig):
        report, table = run_rewrite(preset, source, out, seeds)
    else:
        report, table = run_rff(preset, source, out, seeds, args.report_only)
    wall = time.perf_counter() - start
    print("\n" + table)
    print(f"\n{args.experiment}: {wall / 60:.1f} min wall in this session, {torch.get_num_threads()} CPU thread(s)")
    if args.publish:
        publish(out, args.publish)
    write_result("bench_science", {"experiment": args.experiment, "config": preset.config.to_dict(),
                                   "per_class": preset.per_class, "seeds": seeds, "wall_seconds": wall,
                                   "table": table}, args.experiment + ("-quick" if args.quick else ""))


if __name__ == "__main__":
    main()
