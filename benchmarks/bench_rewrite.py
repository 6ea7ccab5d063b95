"""Parameters, MACs and CPU latency before/after the parameter-saving rewrites (issue 4).

    python benchmarks/bench_rewrite.py                 # both cases, batch 32, 7 interleaved pairs
    python benchmarks/bench_rewrite.py --train         # also one training step (forward + backward)
    python benchmarks/bench_rewrite.py --quick

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
from _common import interleaved, median, parser, write_result  # noqa: E402

from rffsurgery.surgery import Rewritten, rewrite  # noqa: E402
from rffsurgery.surgery.report import macs  # noqa: E402

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


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7, help="interleaved pairs per measurement")
    p.add_argument("--train", action="store_true", help="also time one SGD step (forward + backward)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.batch = 2, 8
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} interleaved pairs")
    results = {}
    for name in args.cases:
        torch.manual_seed(0)
        model, options = CASES[name]
        results[name] = measure(rewrite(model, **options), args.batch, args.repeats, args.train)
        report(name, results[name])
    write_result("rewrite", {"batch": args.batch, "repeats": args.repeats, "cases": results})


if __name__ == "__main__":
    main()
