"""The RFF experiment's aggregate report: paired deltas per split and overall, the placebo's, every metric."""

from __future__ import annotations

from statistics import mean
from typing import Any, Sequence

from .stats import summarize

__all__ = ["EPOCH_TIME_NOTE", "aggregate"]

EPOCH_TIME_NOTE = ("mean over runs of one RFF and one normal branch epoch timed once each, one after the other: "
                   "a noisy, unpaired figure (load bursts hit one side); benchmarks/bench_train.py measures the "
                   "ratio interleaved over rounds")


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per split and overall: mean delta, 95% t-interval, how many runs (and splits) improved."""
    if not results:
        raise ValueError("no finished runs to report")
    by_split: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_split.setdefault(r["split"], []).append(r)
    splits = {}
    for name, runs in by_split.items():
        splits[name] = {
            "summary": summarize([r["delta"] for r in runs]).to_dict(),
            "seeds": [r["seed"] for r in runs],
            "n": [r["n"] for r in runs],
            "normal_accuracy": mean(r["normal_accuracy"] for r in runs),
            "rff_accuracy": mean(r["rff_accuracy"] for r in runs),
            **_control(runs),
        }
    overall = summarize([r["delta"] for r in results])
    split_means = [s["summary"]["mean"] for s in splits.values()]
    warnings = [w for w in [overall.warning] + [f"split {k}: {s['summary']['warning']}" for k, s in splits.items()
                                                 if s["summary"]["warning"]] if w]
    return {
        "runs": list(results),
        "splits": splits,
        "overall": overall.to_dict(),
        "splits_improved": sum(m > 0 for m in split_means),
        "epoch_time_ratio": mean(r["epoch_time_ratio"] for r in results),
        "epoch_time_ratio_note": EPOCH_TIME_NOTE,
        "warnings": warnings,
        **_control(results, "overall_control"),
        "probe": results[0].get("probe"),
        "metrics": _metric_means(results),
    }


def _control(runs: Sequence[dict[str, Any]], key: str = "summary_control") -> dict[str, Any]:
    """The placebo branch's accuracy and paired summary, when the runs have one."""
    if "control_delta" not in runs[0]:
        return {}
    return {"control_accuracy": mean(r["control_accuracy"] for r in runs),
            key: summarize([r["control_delta"] for r in runs]).to_dict()}


_METRICS = ("lbfgs", "sgd_final", "sgd_best")


def _metric_means(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per transfer metric (probe, SGD head final and best epoch): mean accuracy per model and the RFF delta."""
    out = {}
    for metric in _METRICS:
        if f"normal_{metric}" not in results[0]:
            continue
        models = [m for m in ("normal", "rff", "control") if f"{m}_{metric}" in results[0]]
        out[metric] = {m: mean(r[f"{m}_{metric}"] for r in results) for m in models}
        out[metric]["delta"] = summarize([r[f"rff_{metric}"] - r[f"normal_{metric}"] for r in results]).to_dict()
    return out
