"""Zoo sweep: every torchvision classification model and every timm architecture through ``analyze(name)``.

Targets: >= 99.9% analysed, >= 99% complete, < 5 min on 2 cores.  The models: torchvision's
classification and video models (at their weights' crop size and clip length), every timm
architecture, and the built-in 1-D nets.  Each model is classified as

- complete: analysed, every node's geometry is exact;
- bounded: analysed, every op has a rule, but some node is reported global (an outer bound)
  because the engine could not follow the factors a reshape split or merged an axis into
  (listed by op and node);
- partial: analysed, but some op is reported unknown or misaligned (grouped by the reason);
- failed: ``analyze`` raised (grouped by cause: construction, trace, shape, …) or the
  worker timed out, ran out of memory or crashed.

Models run in a pool of worker processes (2 by default), forked from a parent
that has already imported torch, torchvision, timm and rffsurgery so that a
worker starts at once.  The parent gives each worker one model at a time, kills
it when the model exceeds ``--timeout`` seconds or ``--max-rss-gb`` of memory,
and replaces it after ``--tasks-per-worker`` models, so that neither a hang, a
crash nor a leak can stop the sweep.  Worker output (model warnings) goes to
``benchmarks/out/bench_zoo_workers.log``; per-model results to
``benchmarks/out/bench_zoo_models.json``.

A partial run (``--quick``, ``--limit``, ``--only`` or explicit model names, e.g. to
re-check the failures after adding a rule) writes ``bench_zoo-<variant>.json`` and
``bench_zoo_models-<variant>.json`` instead, and so never overwrites the full sweep.

Run: ``python benchmarks/bench_zoo.py [--quick] [--limit N] [--only torchvision|timm] [--workers 2] [NAME …]``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import timm
import torch
import torchvision

from _common import OUT, parser, result_path, write_result
from rffsurgery import analyze
from rffsurgery.geometry.factors import BOUND
from rffsurgery.geometry.propagate import ShapeError
from rffsurgery.trace import TraceError
from rffsurgery.models.zoo import ModelNotFound

SHARE_TARGET = 0.999
COMPLETE_TARGET = 0.99
TIME_TARGET_S = 5 * 60
ONE_D = ("m5", "tcn")  # built-in 1-D audio nets (rffsurgery/audio.py)
QUICK_LIMIT = 40
TOP_GROUPS = 15


# -- the model list ----------------------------------------------------------------
def model_names(only: str | None) -> list[str]:
    """Prefixed names, so that a name present in both libraries is analysed from each."""
    names = []
    if only in (None, "torchvision"):
        names += [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
        names += [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models.video)]
        names += [f"rffsurgery:{n}" for n in ONE_D]
    if only in (None, "timm"):
        names += [f"timm:{n}" for n in timm.list_models()]
    return names


def spread(names: list[str], limit: int | None) -> list[str]:
    """``limit`` names evenly spaced over the list (both libraries, many families), in order."""
    if limit is None or limit >= len(names):
        return names
    return [names[i * len(names) // limit] for i in range(limit)]


# -- one model (runs in a worker) ----------------------------------------------------
def _normalise(message: str, width: int = 110) -> str:
    """First line, numbers folded, so that the same failure on different models groups together.

    Digits right after a letter stay: they belong to a name (``MobileNetV5…``), not a size.
    """
    line = message.strip().splitlines()[0] if message.strip() else ""
    return re.sub(r"(?<![A-Za-z])\d+", "N", line)[:width]


def _raised_in_build(exc: BaseException) -> bool:
    return any(frame.name == "build" and frame.filename.endswith(os.path.join("rffsurgery", "zoo.py"))
               for frame in traceback.extract_tb(exc.__traceback__))


def failure_group(exc: BaseException) -> tuple[str, str]:
    """(cause, group key): what kind of failure, and a key that merges the same failure across models."""
    cause = exc.__cause__ or exc
    detail = f"{type(cause).__name__}: {_normalise(str(cause))}"
    if isinstance(exc, TraceError):
        where = re.search(r"in module '[^']*' \(([^)]*)\)", str(exc))
        return "trace error", f"trace error in {where.group(1) if where else 'forward'}: {detail}"
    if isinstance(exc, ShapeError):
        where = re.search(r"\(([^)]*)\) for shapes failed", str(exc))
        return "shape error", f"shape error at {where.group(1) if where else '?'}: {detail}"
    if isinstance(exc, ModelNotFound):
        return "not found", f"not found: {detail}"
    if _raised_in_build(exc):
        return "construction error", f"construction error: {detail}"
    return "other error", f"other error: {detail}"


def analyse_one(name: str) -> dict[str, Any]:
    start = time.perf_counter()
    record: dict[str, Any] = {"model": name}
    try:
        plan = analyze(name)
    except Exception as exc:  # the sweep records every failure rather than stopping
        record["status"] = "failed"
        record["cause"], record["group"] = failure_group(exc)
        record["error"] = str(exc)[:2000]
    else:
        params = next(plan.model.parameters(), None)
        bounded = [{"node": l.name, "op": l.op, "note": next(n for n in l.notes if BOUND in n)}
                   for l in plan if l.bounded]
        record |= {
            "status": "partial" if not plan.complete else "bounded" if bounded else "complete",
            "bounded": bounded,
            "windowed": sum(1 for l in plan if any(l.windowed)),
            "nodes": len(plan),
            "input_size": list(plan.input_size),
            "device": params.device.type if params is not None else None,
            "unknown": [{"node": l.name, "op": l.op, "status": l.status, "reason": l.reason} for l in plan.unknown],
        }
    record["seconds"] = time.perf_counter() - start
    return record


def _serve(conn: Connection, log_path: str) -> None:
    """Worker loop: analyse the names the parent sends until it sends ``None``."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(log, 1)
    os.dup2(log, 2)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)  # one core per worker; the pool provides the parallelism
    while (name := conn.recv()) is not None:
        print(f"--- {name}", flush=True)
        conn.send(analyse_one(name))


# -- the pool (runs in the parent) ------------------------------------------------------
@dataclass
class _Slot:
    proc: mp.Process
    conn: Connection
    task: str | None = None
    started: float = 0.0
    done: int = 0


@dataclass
class Pool:
    """A few forked workers with a per-model timeout and memory cap; a dead worker is replaced."""

    workers: int
    timeout: float
    max_rss: float
    tasks_per_worker: int
    log_path: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def _start(self) -> _Slot:
        parent, child = mp.get_context("fork").Pipe()
        proc = mp.get_context("fork").Process(target=_serve, args=(child, self.log_path), daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent)

    def _record(self, slot: _Slot, record: dict[str, Any]) -> None:
        self.results.append(record)
        slot.task = None
        slot.done += 1
        n = len(self.results)
        print(f"[{n}/{self.total}] {record['model']:<50} {record['status']:<8} {record['seconds']:6.1f}s"
              + (f"  {record['group'][:90]}" if record["status"] == "failed" else ""), flush=True)

    def _lost(self, slot: _Slot, cause: str, group: str, kill: bool = True) -> None:
        """Record the model of a worker that died or must die, and reap the worker."""
        if kill:
            slot.proc.kill()
        slot.proc.join()
        self._record(slot, {"model": slot.task, "status": "failed", "cause": cause, "group": group,
                            "error": group, "seconds": time.perf_counter() - slot.started})

    def run(self, names: list[str]) -> list[dict[str, Any]]:
        self.total = len(names)
        pending = deque(names)
        slots: list[_Slot | None] = [None] * self.workers
        while pending or any(s is not None and s.task is not None for s in slots):
            for i, slot in enumerate(slots):
                if slot is not None and slot.task is None and slot.done >= self.tasks_per_worker:
                    slot.conn.send(None)
                    slot.proc.join()
                    slot = slots[i] = None
                if slot is None and pending:
                    slot = slots[i] = self._start()
                if slot is not None and slot.task is None and pending:
                    slot.task, slot.started = pending.popleft(), time.perf_counter()
                    slot.conn.send(slot.task)
            busy = {s.conn: i for i, s in enumerate(slots) if s is not None and s.task is not None}
            for conn in wait(list(busy), timeout=0.5):
                slot = slots[busy[conn]]
                try:
                    self._record(slot, conn.recv())
                except EOFError:  # the worker died: segfault, abort, OOM killer
                    slot.proc.join()
                    self._lost(slot, "crash", f"crash: worker exit code {slot.proc.exitcode}", kill=False)
                    slots[busy[conn]] = None
            for i, slot in enumerate(slots):
                if slot is None or slot.task is None:
                    continue
                if time.perf_counter() - slot.started > self.timeout:
                    self._lost(slot, "timeout", f"timeout: over {self.timeout:g} s")
                    slots[i] = None
                elif _rss_gb(slot.proc.pid) > self.max_rss:
                    self._lost(slot, "memory", f"memory: over {self.max_rss:g} GB resident")
                    slots[i] = None
        for slot in slots:
            if slot is not None:
                slot.conn.send(None)
                slot.proc.join()
        return self.results


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (OSError, ValueError):  # not Linux, or the process just ended
        return 0.0


# -- summary -------------------------------------------------------------------------
def _groups(records: list[dict[str, Any]], keys_of) -> list[dict[str, Any]]:
    models: dict[str, list[str]] = defaultdict(list)
    for r in records:
        for key in dict.fromkeys(keys_of(r)):  # a model counts once per group
            models[key].append(r["model"])
    ranked = sorted(models.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [{"group": k, "count": len(v), "examples": v[:2]} for k, v in ranked]


def _partial_keys(record: dict[str, Any]) -> list[str]:
    return [f"{u['status']}: {_normalise(u['reason'])}" for u in record.get("unknown", [])]


def _bounded_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes where the engine could not follow a reshape's factors, grouped by op and reason, with example nodes."""
    groups = _groups(records, lambda r: [_bounded_key(b) for b in r["bounded"]])
    for g in groups:
        g["nodes"] = [f"{r['model']} {b['node']}" for r in records if r["model"] in g["examples"]
                      for b in r["bounded"] if _bounded_key(b) == g["group"]][:2]
    return groups


def _bounded_key(entry: dict[str, str]) -> str:
    return f"{entry['op']}: {_normalise(entry['note'].split(': spatial axis')[0])}"


def summarise(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    n = len(results)
    status = Counter(r["status"] for r in results)
    analysed = status["complete"] + status["bounded"] + status["partial"]
    failed = [r for r in results if r["status"] == "failed"]
    partial = [r for r in results if r["status"] == "partial"]
    with_bounds = [r for r in results if r.get("bounded")]
    failures = _groups(failed, lambda r: [r["group"]])
    unknowns = _groups(partial, _partial_keys)
    bounds = _bounded_groups(with_bounds)
    windowed = [r for r in results if r.get("windowed")]
    causes = Counter(r["cause"] for r in failed)
    per_source = {src: Counter(r["status"] for r in results if r["model"].startswith(src + ":"))
                  for src in ("torchvision", "timm", "rffsurgery")}
    slowest = sorted(results, key=lambda r: -r["seconds"])[:10]
    on_cpu = [r["model"] for r in results if r.get("device") == "cpu"]

    print(f"\nmodels {n}: complete (exact) {status['complete']}, bounded {status['bounded']}, "
          f"partial {status['partial']}, failed {status['failed']}")
    for src, c in per_source.items():
        if sum(c.values()):
            print(f"  {src:<12} {sum(c.values()):5d} models: complete {c['complete']}, bounded {c['bounded']}, "
                  f"partial {c['partial']}, failed {c['failed']}")
    print(f"models with a node reported global or bounded because of a reshape: {len(with_bounds)} "
          f"({sum(len(r['bounded']) for r in with_bounds)} nodes); models with windowed nodes: {len(windowed)}")
    print(f"share analysed {analysed / n:.1%} (target >= {SHARE_TARGET:.1%}) "
          f"{'PASS' if analysed / n >= SHARE_TARGET else 'MISS'}; share complete {status['complete'] / n:.1%} "
          f"(target >= {COMPLETE_TARGET:.0%}) {'PASS' if status['complete'] / n >= COMPLETE_TARGET else 'MISS'}")
    print(f"total time {wall:.0f} s (target < {TIME_TARGET_S} s on 2 cores) "
          f"{'PASS' if wall < TIME_TARGET_S else 'MISS'};"
          f" sum of per-model times {sum(r['seconds'] for r in results):.0f} s")
    print(f"failures by cause: {dict(causes.most_common())}")
    print(f"models analysed on CPU after the meta device failed: {len(on_cpu)}")
    for title, groups in (("failure groups", failures), ("unknown-op groups (partial models)", unknowns)):
        print(f"\ntop {TOP_GROUPS} {title}:")
        for g in groups[:TOP_GROUPS]:
            print(f"  {g['count']:4d}  {g['group']}\n        e.g. {', '.join(g['examples'])}")
    print(f"\nnodes reported global or bounded because of a reshape, by op and reason ({len(bounds)} groups):")
    for g in bounds:
        print(f"  {g['count']:4d}  {g['group']}\n        e.g. {'; '.join(g['nodes'])}")
    print("\nslowest models: " + ", ".join(f"{r['model']} {r['seconds']:.1f}s" for r in slowest))
    return {
        "models": n, "status": dict(status), "share_analysed": analysed / n, "share_complete": status["complete"] / n,
        "wall_s": wall, "per_source": {k: dict(v) for k, v in per_source.items()}, "failure_causes": dict(causes),
        "failure_groups": failures, "unknown_groups": unknowns, "bounded_groups": bounds,
        "bounded_models": len(with_bounds), "windowed_models": len(windowed), "on_cpu": on_cpu,
        "slowest": [{"model": r["model"], "seconds": r["seconds"]} for r in slowest],
        "pass": analysed / n >= SHARE_TARGET and status["complete"] / n >= COMPLETE_TARGET and wall < TIME_TARGET_S,
        "targets": {"share_analysed": SHARE_TARGET, "share_complete": COMPLETE_TARGET, "wall_s": TIME_TARGET_S},
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=None, help="analyse N models spread evenly over the list")
    p.add_argument("--only", choices=("torchvision", "timm"), default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per model before its worker is killed")
    p.add_argument("--max-rss-gb", type=float, default=6.0, help="resident memory per worker before it is killed")
    p.add_argument("--tasks-per-worker", type=int, default=100, help="models per worker before it is replaced")
    p.add_argument("models", nargs="*", help="analyse these (prefixed) names instead, e.g. timm:hiera_base_224")
    args = p.parse_args()
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    names = spread(args.models or model_names(args.only), limit)
    # anything but the full sweep gets its own files, so that it cannot overwrite the full sweep's
    scope = ["names" if args.models else args.only, f"limit{limit}" if limit else None]
    variant = "-".join(filter(None, scope)) or None
    models_path = result_path("bench_zoo_models", variant)

    OUT.mkdir(exist_ok=True)
    log_path = OUT / "bench_zoo_workers.log"
    log_path.write_text("")
    load_before = list(os.getloadavg())  # not machine(): that asks torch for threads, which must wait for the fork
    print(f"sweeping {len(names)} models with {args.workers} workers, timeout {args.timeout:.0f} s; "
          f"load average before {', '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    start = time.perf_counter()
    results = Pool(args.workers, args.timeout, args.max_rss_gb, args.tasks_per_worker, str(log_path)).run(names)
    summary = summarise(results, time.perf_counter() - start)
    models_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"per-model results: {os.path.relpath(models_path)}")
    write_result("bench_zoo", {**summary, "load_avg_before": load_before, "workers": args.workers,
                               "timeout_s": args.timeout, "limit": limit, "only": args.only,
                               "models_file": models_path.name}, variant)


if __name__ == "__main__":
    sys.exit(main())
