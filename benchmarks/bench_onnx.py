"""ONNX sweep: every torchvision classification model (and a sample of timm) exported to ONNX, then analysed.

For each model: build it (random weights), export it with PyTorch's legacy exporter
(``dynamo=False``, opset 17: no onnxscript needed) at its default input size capped at
224 px, and compare ``analyze("model.onnx")`` with ``analyze(name)``: every convolution,
pooling and resampling node of the PyTorch analysis must be in the ONNX analysis under
its name with the same RF, stride, padding, status and global-context flag.  A model is

- exact: every such layer matches;
- differs: some layer is missing or has another geometry (the first few are listed);
- not exported: ``torch.onnx.export`` itself failed (not rffsurgery's concern, but counted);
- failed: an analysis raised, or the worker timed out or crashed.

The figure is the share exact of the models that exported.  Target: 100 %.  Baseline: the
PyTorch analysis of the same model in the same run (its time is reported next to the
ONNX analysis time).  Each model runs in a fresh worker process with a timeout.

Run: ``python benchmarks/bench_onnx.py [--quick] [--only torchvision|timm] [--workers 2] [NAME …]``,
or as a slow parametrised test: ``python -m pytest benchmarks/bench_onnx.py -m slow``.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytest

from _common import parser, write_result

TIMM_SAMPLE = (
    "resnet50", "resnet18d", "efficientnet_b0", "tf_efficientnet_b0", "tf_mixnet_s", "mobilenetv3_large_100",
    "tf_mobilenetv3_small_minimal_100", "mnasnet_100", "ghostnet_100", "rexnet_100", "regnetx_002", "densenet121",
    "dla34", "dpn68", "hrnet_w18_small", "res2net50_14w_8s", "resnest14d", "cspresnet50", "darknet53", "vgg11_bn",
    "inception_v3", "xception41", "convnext_atto", "convnextv2_atto", "efficientvit_b0", "poolformer_s12",
    "mobilevit_xxs", "vit_tiny_patch16_224", "deit_tiny_patch16_224", "levit_128s",
)
MAX_SIDE = 224
TIMEOUT_S = 600
QUICK = ("torchvision:resnet18", "torchvision:mobilenet_v3_small", "torchvision:efficientnet_b0",
         "torchvision:convnext_tiny", "torchvision:inception_v3", "timm:tf_efficientnet_b0", "timm:vit_tiny_patch16_224",
         "timm:dla34")


def models(only: str | None = None) -> list[str]:
    import torchvision

    found = []
    if only in (None, "torchvision"):
        found += [f"torchvision:{n}" for n in sorted(torchvision.models.list_models(module=torchvision.models))]
    if only in (None, "timm"):
        found += [f"timm:{n}" for n in TIMM_SAMPLE]
    return found


def run_one(name: str) -> dict[str, Any]:
    """Export one model and compare the two analyses (runs in a worker)."""
    import torch

    from rffsurgery import analyze
    from rffsurgery.analysis.result import geometry_differences
    from rffsurgery.models.zoo import resolve

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX export
    spec = resolve(name)
    size = (spec.input_size[0], *(min(s, MAX_SIDE) for s in spec.input_size[1:]))
    result: dict[str, Any] = {"model": name, "input_size": list(size)}
    try:
        start = time.perf_counter()
        reference = analyze(name, size)
        result["torch_s"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - recorded, not raised: the sweep goes on
        return {**result, "status": "failed", "reason": f"PyTorch analysis: {type(exc).__name__}: {exc}"[:300]}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            module = spec.build("cpu").eval()
            start = time.perf_counter()
            with torch.no_grad():
                torch.onnx.export(module, (torch.randn(1, *size),), str(path), dynamo=False, opset_version=17)
            result["export_s"] = time.perf_counter() - start
            del module
        except Exception as exc:  # noqa: BLE001
            return {**result, "status": "not exported", "reason": f"{type(exc).__name__}: {exc}"[:300]}
        try:
            start = time.perf_counter()
            plan = analyze(str(path))
            result["onnx_s"] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001
            return {**result, "status": "failed", "reason": f"ONNX analysis: {type(exc).__name__}: {exc}"[:300]}
    compared, differ = geometry_differences(reference, plan)
    unknown = [f"{l.name}: {l.reason}" for l in plan.unknown]
    return {**result, "status": "differs" if differ else "exact", "layers": compared, "differ": differ[:5],
            "n_differ": len(differ), "onnx_unknown": unknown[:5], "torch_complete": reference.complete}


def _worker(name: str, conn: Any) -> None:
    try:
        conn.send(run_one(name))
    except Exception as exc:  # noqa: BLE001 - run_one records what it expects; anything else is reported too
        conn.send({"model": name, "status": "failed", "reason": f"worker: {type(exc).__name__}: {exc}"[:300]})
    conn.close()


def sweep(names: list[str], workers: int) -> list[dict[str, Any]]:
    """Each model in its own forked process, ``workers`` at a time, killed after :data:`TIMEOUT_S`."""
    context = mp.get_context("fork")
    pending, running, results = list(names), {}, []
    while pending or running:
        while pending and len(running) < workers:
            name = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(name, send), daemon=True)
            process.start()
            send.close()
            running[name] = (process, receive, time.monotonic())
        for name, (process, receive, started) in list(running.items()):
            if receive.poll():
                result = receive.recv()
            elif not process.is_alive():
                result = {"model": name, "status": "failed", "reason": f"worker died (exit code {process.exitcode})"}
            elif time.monotonic() - started > TIMEOUT_S:
                process.kill()
                result = {"model": name, "status": "failed", "reason": f"timed out after {TIMEOUT_S} s"}
            else:
                continue
            process.join()
            del running[name]
            results.append(result)
            print(f"  {name:<45} {result['status']:<13} {result.get('layers', '')!s:>4} layers "
                  f"{result.get('reason', '') or '; '.join(result.get('differ', []))[:120]}", flush=True)
        time.sleep(0.2)
    return results


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", choices=["torchvision", "timm"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("names", nargs="*")
    args = p.parse_args()
    names = args.names or (list(QUICK) if args.quick else models(args.only))
    import timm  # noqa: F401 - imported once here, so that every forked worker starts at once
    import torch  # noqa: F401

    import rffsurgery  # noqa: F401
    start = time.perf_counter()
    results = sweep(names, args.workers)
    wall = time.perf_counter() - start
    exported = [r for r in results if r["status"] != "not exported"]
    exact = [r for r in exported if r["status"] == "exact"]
    share = len(exact) / max(len(exported), 1)
    torch_s = sum(r.get("torch_s", 0) for r in exact)
    onnx_s = sum(r.get("onnx_s", 0) for r in exact)
    print(f"\nmodels {len(results)}, exported {len(exported)}, exact {len(exact)} "
          f"({100 * share:.1f} %, target 100 %), layers compared {sum(r.get('layers', 0) for r in exact)}")
    print(f"analysis time of the exact models: ONNX {onnx_s:.1f} s, PyTorch (baseline) {torch_s:.1f} s, "
          f"ratio {onnx_s / max(torch_s, 1e-9):.2f}x; wall {wall:.0f} s")
    for r in results:
        if r["status"] != "exact":
            print(f"  {r['status']:<13} {r['model']}: {r.get('reason') or '; '.join(r.get('differ', []))}"[:240])
    variant = "custom" if args.names else ("quick" if args.quick else args.only)
    write_result("bench_onnx", {"share_exact": share, "models": len(results), "exported": len(exported),
                                "exact": len(exact), "wall_s": wall, "onnx_s": onnx_s, "torch_s": torch_s,
                                "results": results}, variant)


@pytest.mark.slow
@pytest.mark.parametrize("name", models())
def test_onnx_analysis_is_exact(name: str) -> None:
    result = run_one(name)
    if result["status"] == "not exported":
        pytest.skip(result["reason"])
    assert result["status"] == "exact", result.get("reason") or result["differ"]


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        traceback.print_exc(limit=0)
        sys.exit(130)
