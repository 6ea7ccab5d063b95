"""Cost of ``analyze`` against graph size: synthetic residual nets of 10 … 1000 blocks must grow linearly.

Each block is ``x + relu(bn(conv3x3(x)))`` (4 graph nodes), stacked after a
stem conv and built on the meta device, so only the analysis is measured.  For
every size it times ``analyze`` and, separately, its two passes (``trace`` and
``propagate``; the rest is building the ``Plan``), then fits the slope of
log(time) against log(blocks).  A slope of 1 is linear, 2 quadratic.

Verdict: linear when the fitted slope over all sizes *and* the slope fitted over
the sizes of at least 100 blocks are both <= 1.15.  The second fit matters
because a fixed per-call cost flattens the small sizes and would hide a
quadratic term, which shows first at the large sizes; it uses three sizes rather
than the last pair so that one noisy size on the shared machine cannot decide it.

Run: ``python benchmarks/bench_scaling.py [--quick] [--sizes 10,30,100] [--repeats N]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from _common import interleaved, median, parser, write_result
from rffsurgery import analyze
from rffsurgery.geometry.propagate import propagate
from rffsurgery.trace import trace

SLOPE_TARGET = 1.15
SIZES = (10, 30, 100, 300, 1000)
LARGE = 100  # sizes from here on have negligible fixed cost
QUICK_SIZES = (10, 30, 100, 300)
CHANNELS = 8
INPUT = (3, 32, 32)


class Block(nn.Module):
    """conv-bn-relu with an identity shortcut: one add per block keeps every node a branch merge."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.relu(self.bn(self.conv(x)))


def synthetic(blocks: int) -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Conv2d(INPUT[0], CHANNELS, 3, padding=1),
                             *(Block(CHANNELS) for _ in range(blocks))).eval()


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def measure(sizes: tuple[int, ...], repeats: int) -> dict[int, dict[str, float]]:
    """Medians per size; the rounds interleave every size, so a burst of load hits them all alike."""
    shape = (1, *INPUT)
    fns, nodes = {}, {}
    for n in sizes:
        model = synthetic(n)
        traced = trace(model)
        nodes[n] = len(traced.graph.nodes)
        fns |= {
            (n, "analyze"): lambda m=model: analyze(m, INPUT),
            (n, "trace"): lambda m=model: trace(m),
            (n, "propagate"): lambda t=traced: propagate(t, shape),
        }
    times = interleaved(fns, repeats=repeats, warmup=1)
    rows = {n: {"nodes": nodes[n]} for n in sizes}
    for (n, part), values in times.items():
        rows[n][part] = median(values)
    for row in rows.values():
        row["assembly"] = row["analyze"] - row["trace"] - row["propagate"]
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated block counts (default 10,30,100,300,1000)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per size (default 5, --quick 2)")
    args = p.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else QUICK_SIZES if args.quick else SIZES
    repeats = args.repeats or (2 if args.quick else 5)

    rows = measure(sizes, repeats)
    print(f"synthetic conv-bn-relu residual nets on meta, input {INPUT}, {repeats} interleaved rounds, medians")
    print(f"{'blocks':>7} {'nodes':>6} {'analyze s':>10} {'ms/block':>9} {'trace ms/bl':>12} {'propagate ms/bl':>16}"
          f" {'assembly ms/bl':>15}")
    for n, r in rows.items():
        print(f"{n:>7} {int(r['nodes']):>6} {r['analyze']:>10.4f} {r['analyze'] / n * 1e3:>9.3f}"
              f" {r['trace'] / n * 1e3:>12.3f} {r['propagate'] / n * 1e3:>16.3f} {r['assembly'] / n * 1e3:>15.3f}")
    ns = list(rows)
    slopes = {part: slope(ns, [rows[n][part] for n in ns]) for part in ("analyze", "trace", "propagate", "assembly")
              if all(rows[n][part] > 0 for n in ns)}
    large = [n for n in ns if n >= LARGE]
    large_fit = slope(large, [rows[n]["analyze"] for n in large]) if len(large) > 1 else slopes["analyze"]
    segments = {f"{a}->{b}": slope([a, b], [rows[a]["analyze"], rows[b]["analyze"]]) for a, b in zip(ns, ns[1:])}
    print("log-log slope over all sizes (1 = linear, 2 = quadratic): "
          + ", ".join(f"{part} {value:.3f}" for part, value in slopes.items()))
    print(f"analyze slope over sizes >= {LARGE} blocks: {large_fit:.3f}; per segment: "
          + ", ".join(f"{k} {v:.2f}" for k, v in segments.items()))
    ok = slopes["analyze"] <= SLOPE_TARGET and large_fit <= SLOPE_TARGET
    print(f"verdict: {'PASS linear' if ok else 'MISS super-linear'} "
          f"(fit {slopes['analyze']:.3f}, large-size fit {large_fit:.3f}; target <= {SLOPE_TARGET})")
    write_result("bench_scaling", {"sizes": ns, "repeats": repeats, "rows": rows, "slopes": slopes,
                                   "large_size_slope": large_fit, "segment_slopes": segments, "target": SLOPE_TARGET,
                                   "pass": ok})


if __name__ == "__main__":
    main()
