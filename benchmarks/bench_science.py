"""Does RFF improve transfer on real images? Fashion-MNIST, base CNN, many splits × seeds, with a placebo (issue 11).

Experiment 1 of the paper (``--until-overfit``: experiment 2) on Fashion-MNIST with the
base CNN at the paper's data scale (500 training images per class, like its CIFAR-100),
over K seeded random 8/2 splits × several seeds.  Every run trains model 1 (normal
branch epoch), model 2 (RFF) and model 2′ (placebo: the branch epoch trained normally
in another data order), then measures transfer with the L-BFGS probe and the paper's
SGD-trained head (final and best epoch) on the 2,000 official test images of the
transfer classes.  Printed: accuracies, paired deltas with 95 % CIs, exact sign tests,
the minimal detectable effect at 80 % power, and protocol runs per hour.

Needs the real files: ``apt-get install dataset-fashion-mnist`` (→ /usr/share/datasets/
fashion-mnist) or ``--data-root`` at a folder with the four IDX files.  Interrupted runs
continue where they stopped when the same command is run again (checkpoints in
``benchmarks/out/science/``; ``--fresh`` starts over).

Run: ``python benchmarks/bench_science.py [--splits random:10] [--seeds 0-2] [--per-class 500]
[--until-overfit] [--quick]``
"""

from __future__ import annotations

import shutil
import sys
import time

import torch

from _common import OUT, parser, write_result
from rffsurgery.train import DatasetNotFound, ProtocolConfig, mnist_source, random_splits, resolve_splits
from rffsurgery.train.checkpoint import load_checkpoint
from rffsurgery.cli.train import parse_seeds
from rffsurgery.train.protocols.experiment import run_experiment
from rffsurgery.reports.training import format_table, write_report
from rffsurgery.train.protocols.aggregate import aggregate

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--splits", default="random:10", help="random:K, or named Fashion-MNIST splits (comma list)")
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--per-class", type=int, default=500, help="training images per class (paper: 500)")
    p.add_argument("--epochs", type=int, default=4, help="experiment 1: base epochs (paper: 4)")
    p.add_argument("--transfer-epochs", type=int, default=50, help="epochs of the SGD-trained head")
    p.add_argument("--until-overfit", action="store_true", help="experiment 2: n = onset of overfitting")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--base-val-per-class", type=int, default=250,
                   help="base-class validation images per class (only logs and --until-overfit use them)")
    p.add_argument("--part", default="0/1",
                   help="i/m: train only runs whose index ≡ i mod m (to share the runs among m processes); "
                        "then run once with --report-only to put them together")
    p.add_argument("--report-only", action="store_true", help="report the finished runs, train nothing")
    p.add_argument("--fresh", action="store_true", help="delete earlier checkpoints of this configuration first")
    args = p.parse_args()
    if args.quick:
        args.splits, args.seeds, args.per_class, args.epochs, args.transfer_epochs = "random:2", "0-1", 50, 1, 10
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        source = mnist_source("fashion-mnist", args.data_root, per_class=args.per_class,
                              base_val_per_class=args.base_val_per_class)
    except DatasetNotFound as exc:
        sys.exit(f"bench_science needs the real Fashion-MNIST files: {exc} (or pass --data-root DIR)")
    if args.splits.startswith("random:"):
        splits = random_splits(source.classes, int(args.splits.partition(":")[2]), 8, 2)
    else:
        splits = resolve_splits(args.splits, source.splits)
    seeds = parse_seeds(args.seeds)
    cfg = ProtocolConfig(epochs=args.epochs, until_overfit=args.until_overfit, transfer_epochs=args.transfer_epochs,
                         device="cpu", probe="lbfgs", control=True)
    part, parts = (int(x) for x in args.part.split("/"))
    variant = f"{'exp2' if args.until_overfit else 'exp1'}-pc{args.per_class}" + ("-quick" if args.quick else "")
    if parts > 1:
        variant += f"-part{part}of{parts}"
    out = OUT / "science" / variant.split("-part")[0]
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    results, run_seconds = [], []
    start = time.perf_counter()
    # seed-major, so that a stopped benchmark has every split at the first seeds
    for index, (seed, split) in enumerate((seed, split) for seed in seeds for split in splits):
        if args.report_only:
            path = out / f"split-{split.name}" / f"seed-{seed}" / "checkpoint.pt"
            state = load_checkpoint(path) if path.exists() else {}
            results += [state["result"]] if state.get("stage") == "done" else []
        elif index % parts == part:
            t0 = time.perf_counter()
            results += run_experiment(cfg, source, [split], [seed], out, resume=True, plots=False, log=print)["runs"]
            run_seconds.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    meta = {"source": source.name, "config": cfg.to_dict(), "per_class": args.per_class,
            "splits": [s.name for s in splits], "seeds": seeds}
    report = write_report(out, {"meta": meta, **aggregate(results)}, plots=False)
    print("\n" + format_table(report))
    fresh = [s for s in run_seconds if s > 1]  # runs read back from a finished checkpoint take ~0 s
    per_hour = 3600 * len(fresh) / sum(fresh) if fresh else float("nan")
    speed = (f"{len(fresh)} trained now at {per_hour:.1f} protocol runs per hour (3 branch models each, "
             f"{torch.get_num_threads()} CPU thread(s), shared machine)" if fresh else "all read back from checkpoints")
    print(f"\n{len(results)} runs ({len(splits)} splits × {len(seeds)} seeds), {wall / 60:.1f} min wall; {speed}")
    write_result("bench_science", {
        "config": cfg.to_dict(), "per_class": args.per_class, "splits": {s.name: [s.base, s.transfer] for s in splits},
        "seeds": seeds, "wall_seconds": wall, "runs_per_hour": per_hour, "table": format_table(report),
        "overall": report["overall"], "overall_control": report["overall_control"], "metrics": report["metrics"],
        "runs": report["runs"]}, variant)


if __name__ == "__main__":
    main()
