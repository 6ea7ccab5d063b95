"""The RFF protocol's report as a readable table, its files, and its plots (matplotlib, Agg backend).

Per run: ``curves.png``.  Per experiment: ``report.json``, ``report.txt`` and
``deltas.png``, from the report that :func:`rffsurgery.train.protocols.aggregate.aggregate`
computed.  Every file is written to a temporary name and renamed, so readers never see
half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..files import write_text
from .plot import pyplot, save_figure

__all__ = ["format_table", "plot_curves", "plot_deltas", "write_report"]


def _signed(x: float | None) -> str:
    return "" if x is None else f"{x:+.3f}"


def _ci(summary: dict[str, Any]) -> str:
    if summary["ci_low"] is None:
        return "—"
    return f"[{summary['ci_low']:+.3f}, {summary['ci_high']:+.3f}]"


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table followed by any warnings."""
    control = "overall_control" in report
    header = f"{'split':<8}{'runs':>5}{'n':>7}{'normal':>9}{'rff':>8}{'delta':>9}  {'95% CI':<19}{'improved':>9}"
    header += f"{'control':>9}{'ctrl Δ':>8}" if control else ""
    lines = [header, "-" * len(header)]
    for name, s in report["splits"].items():
        summ = s["summary"]
        lines.append(f"{name:<8}{summ['n']:>5}{_span(s['n']):>7}{s['normal_accuracy']:>9.3f}{s['rff_accuracy']:>8.3f}"
                     f"{_signed(summ['mean']):>9}  {_ci(summ):<19}{summ['improved']:>5}/{summ['n']:<3}"
                     + (f"{s['control_accuracy']:>9.3f}{_signed(s['summary_control']['mean']):>8}" if control else ""))
    o = report["overall"]
    lines.append("-" * len(header))
    lines.append(f"{'all':<8}{o['n']:>5}{'':>7}{'':>9}{'':>8}{_signed(o['mean']):>9}  {_ci(o):<19}"
                 f"{o['improved']:>5}/{o['n']:<3}"
                 + (f"{report['control_accuracy']:>9.3f}{_signed(report['overall_control']['mean']):>8}"
                    if control else ""))
    lines.append(f"splits with a positive mean delta: {report['splits_improved']}/{len(report['splits'])}; "
                 f"RFF/normal epoch time: {report['epoch_time_ratio']:.2f} (single unpaired measurement per run, "
                 "noisy; see report.json)")
    lines += _paired_lines(report)
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


def _paired(label: str, s: dict[str, Any]) -> str:
    sign = "—" if s["sign_p"] is None else f"{s['sign_p']:.3f}"
    mde = "—" if s["mde"] is None else f"±{s['mde']:.3f}"
    return (f"{label:<22}{_signed(s['mean']):>7}  95% CI {_ci(s):<19} sign test p={sign} "
            f"({s['improved']}+/{s['worse']}-)  MDE(80% power) {mde}")


def _paired_lines(report: dict[str, Any]) -> list[str]:
    """Paired statistics over all runs: the RFF delta, the placebo's (the noise floor), every transfer metric."""
    probe = report.get("probe")
    if probe is None:
        return []
    metric = {"lbfgs": "L-BFGS probe", "sgd": "SGD head, final epoch"}[probe]
    lines = [f"metric: {metric}; paired over {report['overall']['n']} runs (splits × seeds)",
             _paired("RFF − normal", report["overall"])]
    if "overall_control" in report:
        lines.append(_paired("control − normal", report["overall_control"]))
    names = {"lbfgs": "L-BFGS probe", "sgd_final": "SGD head final", "sgd_best": "SGD head best"}
    for key, m in report["metrics"].items():
        accs = "  ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "delta")
        lines.append(f"{names[key]:<16}{accs}  delta {_signed(m['delta']['mean'])} {_ci(m['delta'])}")
    return lines


def write_report(out_dir: Path, report: dict[str, Any], plots: bool = True) -> dict[str, Any]:
    """Write ``report.json``, ``report.txt`` and (optionally) ``deltas.png`` for an aggregated report; returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    write_text(out_dir / "report.txt", format_table(report) + "\n")
    if plots:
        plot_deltas(report, out_dir / "deltas.png")
    return report


def _draw(ax, series: Sequence[tuple[str, list[dict[str, Any]]]], title: str) -> None:
    colours = {"shared": "black", "normal": "tab:blue", "rff": "tab:red", "control": "tab:green"}
    for model, rows in series:
        if not rows:
            continue
        xs = [r["epoch"] for r in rows]
        ax.plot(xs, [r["train_accuracy"] for r in rows], "--", color=colours[model], label=f"{model} train")
        ax.plot(xs, [r["val_accuracy"] for r in rows], "-o", ms=3, color=colours[model], label=f"{model} val")
    ax.set(xlabel="epoch", ylabel="accuracy", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _mark_branch(ax, epoch: int) -> None:
    """Shade the branch epoch (from the end of epoch − 1 to its end), where normal and RFF part ways."""
    ax.axvspan(epoch - 1, epoch, color="gold", alpha=0.25, lw=0, label=f"branch epoch {epoch} (RFF: frozen layers)")
    ax.axvline(epoch - 1, color="goldenrod", lw=0.8, ls=":")


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Train/val accuracy per model: base training and the branch epoch (left, shaded), transfer (right)."""
    plt = pyplot("or pass --no-plots")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = [r for r in history if r["stage"] == "base"]
    left_series, right_series = [("shared", base)], []
    for model in ("normal", "rff", "control"):
        branch = [r for r in history if r["stage"] == "branch" and r["model"] == model]
        start = [r for r in base if branch and r["epoch"] == branch[0]["epoch"] - 1]
        left_series.append((model, start + branch))
        right_series.append((model, [r for r in history if r["stage"] == "transfer" and r["model"] == model]))
    branch_epochs = [r["epoch"] for r in history if r["stage"] == "branch"]
    if branch_epochs:
        _mark_branch(left, min(branch_epochs))
    _draw(left, left_series, "base classes: base training, then the branch epoch")
    _draw(right, right_series, "transfer classes: new output layer, per model")
    fig.tight_layout()
    save_figure(fig, path, force=True, dpi=110)


def plot_deltas(report: dict[str, Any], path: Path) -> None:
    """Per split: each run's delta (dots) and the mean with its 95% interval (bar), with a legend."""
    plt = pyplot("or pass --no-plots")
    names = list(report["splits"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2), 4))
    for i, name in enumerate(names):
        deltas = [r["delta"] for r in report["runs"] if r["split"] == name]
        ax.scatter([i] * len(deltas), deltas, s=12, color="grey", zorder=2, label="one run (seed)" if i == 0 else None)
        summ = report["splits"][name]["summary"]
        err = None if summ["ci_low"] is None else [[summ["mean"] - summ["ci_low"]], [summ["ci_high"] - summ["mean"]]]
        ax.errorbar([i], [summ["mean"]], yerr=err, fmt="o", color="tab:red", capsize=4, zorder=3,
                    label="mean with 95% t-interval" if i == 0 else None)
    ax.axhline(0, color="black", lw=0.8, label="no effect")
    ax.set_xticks(range(len(names)), names)
    ax.set(xlabel="split", ylabel="delta = RFF − normal accuracy", title="transfer accuracy delta per split")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path, force=True, dpi=110)
