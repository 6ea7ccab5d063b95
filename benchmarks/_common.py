"""Timing and reporting helpers shared by the benchmark scripts.

Every benchmark compares a measurement with a baseline taken in the same run on
the same machine, because the machine is shared and its load drifts: absolute
numbers mean little, ratios measured side by side mean something.  Runs are
interleaved (A, B, A, B, …) so that a burst of load from a neighbour hits both
sides, and medians are reported because a single preempted run should not move
the result.  Garbage left by one run (fx graphs are full of reference cycles)
is collected before the next, untimed, so that no run pays for its predecessor.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["OUT", "command_line", "interleaved", "machine", "median", "parser", "print_verdict", "result_path", "timed",
           "write_result"]

OUT = Path(__file__).resolve().parent / "out"
# measure the checkout these scripts live in, not whichever rffsurgery is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--quick`` flag every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="short smoke run (fewer repeats / models)")
    return p


def command_line() -> str:
    """The exact command that produced this run, for copy-paste into the README."""
    script = os.path.relpath(sys.argv[0]) if sys.argv[0] else "?"
    return shlex.join(["python", script, *sys.argv[1:]])


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[Any, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[Any, list[float]]:
    """Run each function ``warmup`` times untimed, then ``repeats`` rounds of one timed call each, in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[Any, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            times[name].append(timed(fn))
    return times


def _commit() -> str | None:
    """The checked-out commit, ``+dirty`` if the package has local changes: the code a result measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=OUT.parent, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "rffsurgery"], cwd=OUT.parent.parent,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """What the numbers were measured on; the load average says how busy the shared machine was."""
    import torch

    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": _commit(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg": list(os.getloadavg()),
    }


def print_verdict(what: str, measured: float, baseline: float, target: float, unit: str = "s") -> dict[str, Any]:
    """Print measured / baseline / ratio / target on one block and return them as a dict."""
    ratio = measured / baseline
    ok = ratio <= target
    print(f"{what}")
    print(f"  measured  {measured:.4f} {unit}")
    print(f"  baseline  {baseline:.4f} {unit}")
    print(f"  ratio     {ratio:.3f}x   target <= {target}x   {'PASS' if ok else 'MISS'}")
    return {"measured": measured, "baseline": baseline, "ratio": ratio, "target": target, "pass": ok}


def result_path(name: str, variant: str | None = None) -> Path:
    """``benchmarks/out/<name>[-<variant>].json``: a smoke run must not overwrite the full run's result."""
    if variant is None and "--quick" in sys.argv[1:]:
        variant = "quick"
    return OUT / (f"{name}-{variant}.json" if variant else f"{name}.json")


def write_result(name: str, result: dict[str, Any], variant: str | None = None) -> Path:
    """Write the result (with the command and the machine) to :func:`result_path` and print the command."""
    OUT.mkdir(exist_ok=True)
    result = {"benchmark": name, "command": command_line(), "machine": machine(), **result}
    path = result_path(name, variant)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"command: {result['command']}")
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in result['machine']['load_avg'])} "
          f"on {result['machine']['cpus']} cpus")
    print(f"wrote {os.path.relpath(path)}")
    return path


def median(values: list[float]) -> float:
    """Median of repeated timings: robust to the odd run preempted by a neighbour."""
    return statistics.median(values)
