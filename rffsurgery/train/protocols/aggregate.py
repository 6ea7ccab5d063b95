"""The RFF experiment's aggregate report: per split and overall, every arm against normal (and RFF against placebo).

Comparisons (those whose arms ran): ``rff`` (RFF − normal, the effect), ``placebo``
(placebo − normal), ``aa`` (A/A − normal, the data-order noise floor) and
``rff_vs_placebo`` (RFF − placebo: does it matter *which* layers are frozen?).

Each is reported as an accuracy difference and as an **error-rate ratio** (mean error of
the first arm / mean error of the second, per split over its seeds; below 1 means fewer
errors), because near the ceiling a small difference can be a large relative change.
The **headline interval is computed over the split means** (a Student-t interval with
``splits − 1`` degrees of freedom), since the seeds of a split share its classes and are
not independent; the interval over all runs is kept as a secondary figure, and is too
narrow whenever the splits differ.  The error-rate ratio's headline is the geometric mean
of the per-split ratios with a t-interval on their logarithms.  Every transfer metric
(the probe on the head's input, the probe on the pooled conv features, the SGD head's
last epoch) gets the same treatment; probe fits that did not converge are counted and
listed.
"""

from __future__ import annotations

from statistics import mean
from typing import Any, Sequence

from .stats import summarize, summarize_ratios

__all__ = ["COMPARISONS", "EPOCH_TIME_NOTE", "METRICS", "aggregate", "error_ratio"]

EPOCH_TIME_NOTE = ("mean over runs of one RFF and one normal branch epoch timed once each, one after the other: "
                   "a noisy, unpaired figure (load bursts hit one side); benchmarks/bench_train.py measures the "
                   "ratio interleaved over rounds")

COMPARISONS: dict[str, tuple[str, str, str]] = {
    "rff": ("rff", "normal", "RFF − normal"),
    "placebo": ("placebo", "normal", "placebo − normal"),
    "aa": ("aa", "normal", "A/A − normal"),
    "rff_vs_placebo": ("rff", "placebo", "RFF − placebo"),
}
"""Comparison key → (arm, reference arm, label)."""

METRICS: dict[str, str] = {"lbfgs": "L-BFGS probe, head input", "lbfgs_pooled": "L-BFGS probe, pooled conv",
                           "sgd_final": "SGD head, last epoch"}
"""Per-arm transfer metrics of a run (``{arm}_{metric}``) → label."""

_PROBES = ("lbfgs", "lbfgs_pooled")


def error_ratio(accuracies: Sequence[float], references: Sequence[float]) -> float | None:
    """Mean error of ``accuracies`` / mean error of ``references``; ``None`` when either has no errors at all."""
    error, reference = 1 - mean(accuracies), 1 - mean(references)
    return error / reference if error > 0 and reference > 0 else None


def _arms(results: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(results[0].get("arms", ("normal", "rff")))


def _comparisons(arms: Sequence[str]) -> list[str]:
    return [key for key, (a, b, _) in COMPARISONS.items() if a in arms and b in arms]


def _values(runs: Sequence[dict[str, Any]], arm: str, metric: str) -> list[float]:
    return [r[f"{arm}_{metric}"] for r in runs]


def _by_split(results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["split"], []).append(r)
    return groups


def _compare(groups: dict[str, list[dict[str, Any]]], key: str, metric: str) -> dict[str, Any]:
    """One comparison under one metric, overall: over split means (headline), over runs, and as error ratios."""
    arm, ref, label = COMPARISONS[key]
    split_means, run_deltas, ratios = [], [], []
    for runs in groups.values():
        a, b = _values(runs, arm, metric), _values(runs, ref, metric)
        deltas = [x - y for x, y in zip(a, b)]
        split_means.append(mean(deltas))
        run_deltas += deltas
        ratios.append(error_ratio(a, b))
    return {"label": label, "arm": arm, "reference": ref, "split_means": summarize(split_means, unit="split").to_dict(),
            "runs": summarize(run_deltas).to_dict(), "error_ratio": summarize_ratios(ratios).to_dict(),
            "splits_improved": sum(m > 0 for m in split_means)}


def _split_entry(runs: Sequence[dict[str, Any]], arms: Sequence[str], metric: str) -> dict[str, Any]:
    """One split over its seeds: mean accuracy per arm and, per comparison, the deltas and the error ratio."""
    comparisons = {}
    for key in _comparisons(arms):
        arm, ref, _ = COMPARISONS[key]
        a, b = _values(runs, arm, metric), _values(runs, ref, metric)
        comparisons[key] = {"summary": summarize([x - y for x, y in zip(a, b)]).to_dict(),
                            "error_ratio": error_ratio(a, b)}
    return {"seeds": [r["seed"] for r in runs], "n": [r["n"] for r in runs],
            "accuracy": {arm: mean(_values(runs, arm, metric)) for arm in arms},
            "normal_accuracy": mean(_values(runs, "normal", metric)), "rff_accuracy": mean(_values(runs, "rff", metric)),
            "summary": comparisons["rff"]["summary"], "comparisons": comparisons}


def _probe_fits(results: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
    """How many probe fits did not converge, per probe, and which (split, seed, arm) they were."""
    counts, failed = {}, []
    for probe in _PROBES:
        if f"normal_{probe}_converged" not in results[0]:
            continue
        for r in results:
            failed += [{"split": r["split"], "seed": r["seed"], "arm": arm, "probe": probe,
                        "grad_norm": r.get(f"{arm}_{probe}_grad_norm")}
                       for arm in arms if not r[f"{arm}_{probe}_converged"]]
        counts[probe] = sum(f["probe"] == probe for f in failed)
    return {"fits": {probe: len(results) * len(arms) for probe in counts}, "not_converged": counts, "failed": failed}


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per split and overall, every comparison of the arms (see the module docstring)."""
    if not results:
        raise ValueError("no finished runs to report")
    arms = _arms(results)
    groups = _by_split(results)
    comparisons = {key: _compare(groups, key, "accuracy") for key in _comparisons(arms)}
    fits = _probe_fits(results, arms)
    warnings = [f"{c['label']}: {c['split_means']['warning']}" for c in comparisons.values()
                if c["split_means"]["warning"]][:1]
    warnings += [f"{n} of {fits['fits'][probe]} {METRICS[probe]} fits did not converge (listed in report.json)"
                 for probe, n in fits["not_converged"].items() if n]
    warnings += [f"{c['label']}: {c['error_ratio']['undefined']} split(s) without errors in an arm have no error "
                 "ratio" for c in comparisons.values() if c["error_ratio"]["undefined"]]
    return {
        "metric": results[0].get("metric"),
        "probe": results[0].get("probe"),
        "arms": list(arms),
        "runs": list(results),
        "splits": {name: _split_entry(runs, arms, "accuracy") for name, runs in groups.items()},
        "overall": comparisons["rff"]["split_means"],
        "comparisons": comparisons,
        "metrics": {m: {"accuracy": {arm: mean(_values(results, arm, m)) for arm in arms},
                        **{key: _compare(groups, key, m) for key in _comparisons(arms)}}
                    for m in METRICS if f"normal_{m}" in results[0]},
        "probe_fits": fits,
        "placebo_plan": results[0].get("placebo_plan"),
        "epoch_time_ratio": mean(r["epoch_time_ratio"] for r in results),
        "epoch_time_ratio_note": EPOCH_TIME_NOTE,
        "wall_seconds": mean(r["wall_seconds"] for r in results) if "wall_seconds" in results[0] else None,
        "warnings": warnings,
    }
