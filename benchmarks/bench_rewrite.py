"""Parameters, MACs and CPU latency before/after the parameter-saving rewrites (issues 4 and 9).

    python benchmarks/bench_rewrite.py                 # targets + both cases
    python benchmarks/bench_rewrite.py --train         # the cases also time one training step
    python benchmarks/bench_rewrite.py --quick

**Targets** (issue 9), first: the base CNN rewritten with ``--conv3d-filters 8``
against the original, batch 64 at 32×32, on 1 thread and on all threads, each the
median over 15 interleaved pairs of the per-pair ratio rewritten / original: a
training step (forward, backward, SGD step) ≤ 1.3×, an eval-mode forward ≤ 1.2×.
The channel-sliding layer runs as one Conv2d with a banded weight gathered from
its small kernels, so it does the Conv2d's multiply-accumulates (zeros included):
its time is bounded below by the Conv2d's, and the saving is parameters only.

Cases: resnet50 with ``--meta-groups 16`` (224×224) and the RFF paper's base CNN with
``--conv3d-filters 8`` (32×32).  Latency is the median over interleaved runs
(original, rewritten, original, …) of one eval-mode forward of a batch of 32 on CPU,
so that load from neighbours on the shared machine hits both sides alike; "replaced
layers" times only the modules that were swapped, each on the input it receives in
the original model (for resnet50 the head is ~0.05 % of the MACs, so the whole-model
ratio is all noise).  The
ratios are printed as measured: a channel-sliding Conv3d saves parameters but
still does u/C of the Conv2d's MACs, through a less tuned kernel, so it can be slower.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's rffsurgery, not an installed one
from _common import interleaved, median, parser, write_result  # noqa: E402

from rffsurgery.surgery import Rewritten, rewrite  # noqa: E402
from rffsurgery.analysis.macs import macs  # noqa: E402

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet50-meta16": ("resnet50", {"meta_groups": 16}),
    "base-cnn-conv3d8": ("rff-base-cnn", {"conv3d_filters": 8}),
}


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            model(x)

    return run


def replaced_layers(done: Rewritten, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    """The replaced modules alone, old and new, each on the input it gets inside the original model."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [done.before.get_submodule(c.path).register_forward_pre_hook(
        lambda _m, args, path=c.path: inputs.setdefault(path, args[0])) for c in done.changes]
    with torch.no_grad():
        done.before.eval()(x)
    for hook in hooks:
        hook.remove()

    def run(model: nn.Module) -> Callable[[], None]:
        modules = [(model.get_submodule(c.path).eval(), inputs[c.path]) for c in done.changes]

        def go() -> None:
            with torch.no_grad():
                for module, inp in modules:
                    module(inp)

        return go

    return run(done.before), run(done.after)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run() -> None:
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    return run


def measure(done: Rewritten, batch: int, repeats: int, train: bool) -> dict[str, Any]:
    size = done.input_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *size, generator=g)
    result: dict[str, Any] = {
        "input_size": list(size),
        "changes": [f"{c.path}: {c.before} → {c.after}" for c in done.changes],
        "params": [sum(p.numel() for p in m.parameters()) for m in (done.before, done.after)],
        "macs_per_sample": [macs(m, size)[""] for m in (done.before, done.after)],
    }
    old_layers, new_layers = replaced_layers(done, x)
    timings = {"forward": {"original": forward(done.before.eval(), x), "rewritten": forward(done.after.eval(), x)},
               "replaced layers": {"original": old_layers, "rewritten": new_layers}}
    if train:
        y = torch.randint(0, done.before(x[:2]).shape[1], (batch,), generator=g)
        timings["train step"] = {"original": train_step(done.before.train(), x, y),
                                 "rewritten": train_step(done.after.train(), x, y)}
    for what, fns in timings.items():
        times = interleaved(fns, repeats)
        result[what] = {name: {"median_s": median(t), "runs_s": t} for name, t in times.items()}
        # the ratio within each interleaved pair, then the median: robust to load drifting between pairs
        result[what]["paired_ratio"] = median([a / b for a, b in zip(times["rewritten"], times["original"])])
    return result


def report(name: str, r: dict[str, Any]) -> None:
    print(f"\n{name}  input {'x'.join(map(str, r['input_size']))}")
    for change in r["changes"]:
        print(f"  {change}")
    rows = [("parameters", *r["params"], "{:,}", r["params"][1] / r["params"][0]),
            ("MACs / sample", *r["macs_per_sample"], "{:,}", r["macs_per_sample"][1] / r["macs_per_sample"][0])]
    rows += [(f"{what} (s, median)", r[what]["original"]["median_s"], r[what]["rewritten"]["median_s"], "{:.4f}",
              r[what]["paired_ratio"]) for what in ("forward", "replaced layers", "train step") if what in r]
    for label, before, after, fmt, ratio in rows:
        slower = "  SLOWER" if label.endswith("median)") and ratio > 1 else ""
        print(f"  {label:<27} {fmt.format(before):>16} → {fmt.format(after):>16}   ratio {ratio:.3f}{slower}")
    print("  (latency ratios: median over interleaved pairs of rewritten / original)")


TARGETS = {"train step": 1.3, "forward": 1.2}


def targets(batch: int, repeats: int, thread_counts: list[int]) -> dict[str, Any]:
    """The issue-9 ratios: Conv3d-rewritten base CNN vs the original, per thread count."""
    torch.manual_seed(0)
    done = rewrite("rff-base-cnn", conv3d_filters=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *done.input_size, generator=g)
    y = torch.randint(0, 8, (batch,), generator=g)
    out: dict[str, Any] = {}
    default_threads = torch.get_num_threads()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for what, target in TARGETS.items():
            if what == "forward":
                fns = {"original": forward(done.before.eval(), x), "rewritten": forward(done.after.eval(), x)}
            else:
                fns = {"original": train_step(done.before.train(), x, y),
                       "rewritten": train_step(done.after.train(), x, y)}
            times = interleaved(fns, repeats)
            ratio = median([a / b for a, b in zip(times["rewritten"], times["original"])])
            row = {"measured_s": median(times["rewritten"]), "baseline_s": median(times["original"]),
                   "ratio": ratio, "target": target, "pass": ratio <= target}
            out[f"{what}, {threads} thread{'s' if threads > 1 else ''}"] = row
    torch.set_num_threads(default_threads)
    print(f"targets: rff-base-cnn --conv3d-filters 8 vs original, batch {batch}, 32x32, {repeats} interleaved pairs "
          "(ratio = median of per-pair ratios)")
    for label, r in out.items():
        print(f"  {label:<24} measured {r['measured_s'] * 1e3:8.2f} ms  baseline {r['baseline_s'] * 1e3:8.2f} ms  "
              f"ratio {r['ratio']:.3f}x  target <= {r['target']}x  {'PASS' if r['pass'] else 'MISS'}")
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7, help="interleaved pairs per measurement")
    p.add_argument("--train", action="store_true", help="also time one SGD step (forward + backward)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--target-repeats", type=int, default=15, help="interleaved pairs per target measurement")
    args = p.parse_args()
    all_threads = torch.get_num_threads()
    if args.quick:
        args.repeats, args.batch, args.target_repeats = 2, 8, 3
    print(f"torch {torch.__version__}, {all_threads} threads available")
    goals = targets(64, args.target_repeats, sorted({1, all_threads}))
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"\ncases: {torch.get_num_threads()} threads, batch {args.batch}, {args.repeats} interleaved pairs")
    results = {}
    for name in args.cases:
        torch.manual_seed(0)
        model, options = CASES[name]
        results[name] = measure(rewrite(model, **options), args.batch, args.repeats, args.train)
        report(name, results[name])
    write_result("rewrite", {"targets": goals, "batch": args.batch, "repeats": args.repeats, "cases": results})


if __name__ == "__main__":
    main()
