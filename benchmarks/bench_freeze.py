"""One training epoch with the paper's freeze plan applied versus without (issue 3).

    python benchmarks/bench_freeze.py            # resnet18, 64x64, batch 32, 8 batches, 9 pairs, 1 thread
    python benchmarks/bench_freeze.py --quick

Same model, data and seed; plain and frozen epochs are interleaved (plain, frozen,
plain, frozen, …) so drift in machine load hits both equally; medians are compared.

glibc returns large freed blocks to the kernel and faults them back in on the next
step: ~700k page faults per 64 resnet18 steps here, which swing epoch times by
±10 % and drown a 5–8 % effect.  So (on glibc, unless ``--no-mallopt``) both arms
run with the mmap and trim thresholds raised via ``mallopt``: the same allocator
for both, minus the page-fault noise (steps also get ~13 % faster).
Frozen parameters skip their weight-gradient computation, so a frozen epoch should
be faster: target ratio frozen/plain ≤ 0.95.  (The RFF paper measured its frozen
epochs 0.1–0.7 % *slower*.)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from rffsurgery import analyze, build_freeze_plan
from rffsurgery.plan import freeze

TARGET = 0.95


def pin_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds so freed activations stay mapped (see the module doc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 36))


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
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="2 pairs of 4 batches (smoke run)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core VM, 2-thread steps stall at random)")
    parser.add_argument("--no-mallopt", action="store_true", help="keep glibc's default allocator thresholds")
    args = parser.parse_args()
    pinned = not args.no_mallopt and pin_allocator()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.pairs, args.batches = 2, 4
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None, num_classes=10)
    plan = build_freeze_plan(analyze(model, (3, args.size, args.size)))
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
        "threads": torch.get_num_threads(), "allocator_pinned": pinned, "frozen_parameters": list(plan.parameter_names),
        "plain_epoch_s": p, "frozen_epoch_s": f, "ratio": ratio, "target": TARGET, "pass": ratio <= TARGET,
    }
    print(f"{args.model} {args.size}x{args.size}, batch {args.batch}, {args.batches} batches/epoch, "
          f"{args.pairs} interleaved pairs, {torch.get_num_threads()} threads, "
          f"allocator thresholds {'pinned' if pinned else 'default'}")
    print(f"frozen: {', '.join(t['node'] for t in plan.tagged)}")
    print(f"plain epoch  median {p:.3f} s  (all: {', '.join(f'{t:.3f}' for t in plain)})")
    print(f"frozen epoch median {f:.3f} s  (all: {', '.join(f'{t:.3f}' for t in frozen)})")
    print(f"ratio frozen/plain = {ratio:.3f}  (target <= {TARGET}: {'PASS' if ratio <= TARGET else 'MISS'})")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_freeze.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
