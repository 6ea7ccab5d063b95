"""One training epoch with the paper's freeze plan applied versus without (issue 3).

    python benchmarks/bench_freeze.py            # resnet18, 64x64, batch 32, 16 batches, 5 pairs
    python benchmarks/bench_freeze.py --quick

Same model, data and seed; plain and frozen epochs are interleaved (plain, frozen,
plain, frozen, …) so drift in machine load hits both equally; medians are compared.
Frozen parameters skip their weight-gradient computation, so a frozen epoch should
be faster: target ratio frozen/plain ≤ 0.95.  (The RFF paper measured its frozen
epochs 0.1–0.7 % *slower*.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from rffsurgery import analyze
from rffsurgery.plan import freeze

TARGET = 0.95


def epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list) -> float:
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 pairs of 4 batches (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.batches = 2, 4
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None, num_classes=10)
    plan = analyze(model, (3, args.size, args.size)).freeze_plan()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.size, args.size, generator=g), torch.randint(0, 10, (args.batch,), generator=g))
               for _ in range(args.batches)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    epoch(model, optimizer, batches[:2])  # warm-up
    plain, frozen = [], []
    for _ in range(args.pairs):
        plain.append(epoch(model, optimizer, batches))
        with freeze(model, plan):
            frozen.append(epoch(model, optimizer, batches))
    p, f = statistics.median(plain), statistics.median(frozen)
    ratio = f / p
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": args.model, "input": args.size, "batch": args.batch, "batches": args.batches, "pairs": args.pairs,
        "threads": torch.get_num_threads(), "frozen_parameters": list(plan.parameter_names),
        "plain_epoch_s": p, "frozen_epoch_s": f, "ratio": ratio, "target": TARGET, "pass": ratio <= TARGET,
    }
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch}, {args.batches} batches/epoch, "
          f"{args.pairs} interleaved pairs, {torch.get_num_threads()} threads")
    print(f"frozen: {', '.join(t['node'] for t in plan.tagged)}")
    print(f"plain epoch  median {p:.3f} s  (all: {', '.join(f'{t:.3f}' for t in plain)})")
    print(f"frozen epoch median {f:.3f} s  (all: {', '.join(f'{t:.3f}' for t in frozen)})")
    print(f"ratio frozen/plain = {ratio:.3f}  (target <= {TARGET}: {'PASS' if ratio <= TARGET else 'MISS'})")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_freeze.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
