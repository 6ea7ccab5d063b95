"""``analyze(resnet50)`` against one real forward pass at 1x3x224x224 (target: <= 0.5x).

The model is a torchvision resnet50 instance already built with real (random)
CPU weights in eval mode, so the comparison is what a user pays for an analysis
of a model they hold versus running it once.  The forward pass runs under
``torch.no_grad()`` with torch's default thread count; ``analyze`` is
single-threaded Python, so on a busy machine the ratio moves against us.

Also times the parts: ``trace`` (torch.fx), ``propagate`` (shapes + geometry on
the traced graph) and the rest of ``analyze`` (building the ``Plan``), which is
the total minus the two.  Two context numbers, not part of the verdict:
``torch.fx.symbolic_trace`` (fx tracing plus the GraphModule's code generation:
what tracing costs a tool that does nothing special) and the forward pass on one thread (``analyze``
uses one core, the default forward uses all of them).

Run: ``python benchmarks/bench_analyze.py [--quick] [--repeats N]``.
"""

from __future__ import annotations

import os

import torch
import torchvision

from _common import interleaved, median, parser, print_verdict, write_result
from rffsurgery import analyze
from rffsurgery.geometry.propagate import propagate
from rffsurgery.trace import trace

TARGET = 0.5
INPUT = (1, 3, 224, 224)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 30, --quick 5)")
    args = p.parse_args()
    repeats = args.repeats or (5 if args.quick else 30)

    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(INPUT)
    traced = trace(model)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    times = interleaved({
        "analyze": lambda: analyze(model),
        "forward": forward,
        "trace": lambda: trace(model),
        "propagate": lambda: propagate(traced, INPUT),
        "fx.symbolic_trace": lambda: torch.fx.symbolic_trace(model),
    }, repeats=repeats, warmup=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a block of its own: switching thread counts between runs would perturb both
    times |= interleaved({"forward (1 thread)": forward}, repeats=repeats, warmup=2)
    torch.set_num_threads(threads)
    med = {k: median(v) for k, v in times.items()}
    assembly = med["analyze"] - med["trace"] - med["propagate"]

    print(f"resnet50, {repeats} interleaved rounds after 2 warm-ups, medians; torch threads {threads}")
    verdict = print_verdict("analyze(model) vs forward pass 1x3x224x224 (no_grad)", med["analyze"], med["forward"],
                            TARGET)
    print("  split of analyze:")
    for part, value in (("trace", med["trace"]), ("propagate", med["propagate"]), ("assembly (rest)", assembly)):
        print(f"    {part:<16} {value * 1e3:8.2f} ms  ({value / med['analyze']:.0%})")
    print("  context (not in the verdict):")
    print(f"    torch.fx.symbolic_trace      {med['fx.symbolic_trace'] * 1e3:8.2f} ms")
    print(f"    forward on 1 thread          {med['forward (1 thread)'] * 1e3:8.2f} ms"
          f"  -> ratio {med['analyze'] / med['forward (1 thread)']:.3f}x")
    load = os.getloadavg()[0]
    reliable = load <= (os.cpu_count() or 1)
    if not reliable:
        print(f"  WARNING: load average {load:.1f} exceeds the {os.cpu_count()} cpus: a multi-threaded forward pass"
              " stalls when one of its threads is descheduled, so the baseline (and the ratio) is unreliable;"
              " rerun on a quiet machine or read the 1-thread ratio.")
    write_result("bench_analyze", {
        **verdict, "baseline_reliable": reliable, "repeats": repeats, "medians_s": {**med, "assembly": assembly},
        "times_s": times, "nodes": len(traced.graph.nodes),
    })


if __name__ == "__main__":
    main()
