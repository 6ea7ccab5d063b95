"""The full RFF protocol on the generated dataset, with the class cue on and off, over several seeds (issue 5).

For each cue strength (default 1.0, then 0.0) and each seed, the whole protocol runs:
base training on 8 shapes (cue drawn on their training images only) → branch epoch,
normal vs RFF → transfer to 2 new shapes with a fresh output layer → delta of
transfer validation accuracy.  Reported: mean delta with a 95% t-interval, how many
seeds improved, and the RFF/normal epoch-time ratio — whatever comes out.  The
paper's claim is that RFF helps when training images carry such "occlusive" cues.

Run: ``python benchmarks/bench_protocol.py [--quick] [--seeds 0-4] [--cues 1.0,0.0] [--until-overfit]``
(about 10 minutes on 2 busy CPU cores with the defaults).
"""

from __future__ import annotations

import shutil
import time

import torch

from _common import OUT, parser, write_result
from rffsurgery.train import GeneratedSource, ProtocolConfig, resolve_splits, run_experiment
from rffsurgery.cli.train import parse_seeds
from rffsurgery.reports.training import format_table


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--cues", default="1.0,0.0", help="cue strengths to compare (comma list)")
    p.add_argument("--split", default="g.1", help="generated split(s): g.1, g.2 or all")
    p.add_argument("--per-class", type=int, default=250)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--transfer-epochs", type=int, default=50)
    p.add_argument("--until-overfit", action="store_true", help="experiment-2 mode (n by validation loss)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.quick:
        args.seeds, args.per_class, args.epochs, args.transfer_epochs = "0-1", 40, 1, 20
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ProtocolConfig(epochs=args.epochs, until_overfit=args.until_overfit, transfer_epochs=args.transfer_epochs,
                         device=args.device)
    seeds = parse_seeds(args.seeds)
    results = {}
    for cue in (float(c) for c in args.cues.split(",")):
        source = GeneratedSource(per_class=args.per_class, cue=cue)
        out = OUT / "protocol" / f"cue-{cue}"
        shutil.rmtree(out, ignore_errors=True)  # our own output from a previous run
        start = time.perf_counter()
        report = run_experiment(cfg, source, resolve_splits(args.split, source.splits), seeds, out, log=print)
        seconds = time.perf_counter() - start
        print(f"\ncue strength {cue}: {len(seeds)} seeds, {seconds:.0f} s")
        print(format_table(report) + "\n")
        results[f"cue={cue}"] = {"seconds": seconds, "overall": report["overall"],
                                 "splits": {k: v["summary"] for k, v in report["splits"].items()},
                                 "epoch_time_ratio": report["epoch_time_ratio"],
                                 "runs": [{k: r[k] for k in ("split", "seed", "n", "normal_accuracy", "rff_accuracy",
                                                             "delta", "epoch_time_ratio")} for r in report["runs"]],
                                 "report": str(out / "report.json")}
    write_result("bench_protocol", {"config": cfg.to_dict(), "per_class": args.per_class, "seeds": seeds,
                                    "results": results})


if __name__ == "__main__":
    main()
