"""The RFF protocol's report as a readable table, its files, and its plots (matplotlib, Agg backend).

Per run: ``curves.png``.  Per experiment: ``report.json``, ``report.txt``, ``report.md``
(the tables in Markdown) and ``deltas.png``, from the report that
:func:`rffsurgery.train.protocols.aggregate.aggregate` computed.  Every file is written to a temporary name and renamed, so readers never see
half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..files import write_report_files
from .plot import pyplot, save_figure

__all__ = ["format_markdown", "format_table", "plot_curves", "plot_deltas", "write_report"]


def _signed(x: float | None) -> str:
    return "" if x is None else f"{x:+.3f}"


def _ci(summary: dict[str, Any]) -> str:
    if summary["ci_low"] is None:
        return "—"
    return f"[{summary['ci_low']:+.3f}, {summary['ci_high']:+.3f}]"


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ratio_ci(r: dict[str, Any]) -> str:
    if r["geomean"] is None:
        return "—"
    ci = "" if r["ci_low"] is None else f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    return f"{r['geomean']:.2f}{ci}"


_SHORT = {"rff": "RFF−n", "placebo": "plac−n", "aa": "A/A−n", "rff_vs_placebo": "RFF−plac"}
_ARM = {"normal": "normal", "rff": "rff", "placebo": "placebo", "aa": "A/A"}


def format_table(report: dict[str, Any]) -> str:
    """The report as fixed-width tables (per split; overall over split means; other metrics) and its warnings."""
    arms, keys = report["arms"], list(report["comparisons"])
    width = max(8, *(len(name) + 1 for name in report["splits"]))
    header = f"{'split':<{width}}{'runs':>5}{'n':>6}" + "".join(f"{_ARM[a]:>9}" for a in arms)
    header += "".join(f"{_SHORT[k]:>10}{'(ratio)':>8}" for k in keys)
    lines = [f"per split: mean accuracy over seeds ({_metric_name(report)}); differences, and in brackets the "
             "error-rate ratio (error / reference error; < 1: fewer errors)", header, "-" * len(header)]
    for name, s in report["splits"].items():
        row = f"{name:<{width}}{len(s['seeds']):>5}{_span(s['n']):>6}" + "".join(f"{s['accuracy'][a]:>9.3f}" for a in arms)
        row += "".join(f"{_signed(c['summary']['mean']):>10}{'(' + _ratio(c['error_ratio']) + ')':>8}"
                       for c in s["comparisons"].values())
        lines.append(row)
    lines += ["", f"overall, over the {len(report['splits'])} split means (95 % t-interval, the headline; seeds of "
              "a split are not independent) and the error-rate ratio (geometric mean over splits):"]
    for c in report["comparisons"].values():
        lines.append(_paired(c["label"], c["split_means"], "splits") + f"  error ratio {_ratio_ci(c['error_ratio'])}")
    lines.append(f"over all {report['comparisons']['rff']['runs']['n']} runs (secondary: treats seeds as "
                 "independent, so the interval is too narrow when splits differ):")
    lines += [_paired(c["label"], c["runs"], "runs") for c in report["comparisons"].values()]
    lines += _metric_lines(report)
    lines += _placebo_lines(report)
    lines += [_fits_line(report)] if report["probe_fits"]["fits"] else []
    wall = report.get("wall_seconds")
    lines.append(f"RFF/normal epoch time: {report['epoch_time_ratio']:.2f} (single unpaired measurement per run, "
                 "noisy; see report.json)" + ("" if wall is None else f"; wall time per run {wall / 60:.1f} min"))
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


METRIC_NAMES = {"lbfgs": "L-BFGS probe (head input)", "lbfgs_pooled": "L-BFGS probe (pooled conv)",
                "sgd_final": "SGD head (last epoch)"}


def _metric_name(report: dict[str, Any]) -> str:
    return METRIC_NAMES.get(report.get("metric") or "", "accuracy")


def _fits_line(report: dict[str, Any]) -> str:
    fits = report["probe_fits"]
    return "probe fits not converged: " + ", ".join(
        f"{METRIC_NAMES[p]} {n}/{fits['fits'][p]}" for p, n in fits["not_converged"].items())


def _p(value: float | None) -> str:
    """A p-value cell ("—" when there is none)."""
    return "—" if value is None else f"{value:.3f}"


def _mde(value: float | None) -> str:
    return "—" if value is None else f"±{value:.3f}"


def _paired(label: str, s: dict[str, Any], unit: str) -> str:
    sign, mde, t_p = _p(s["sign_p"]), _mde(s["mde"]), _p(s.get("t_p"))
    return (f"  {label:<17}{_signed(s['mean']):>7}  95% CI {_ci(s):<19} t-test p={t_p:<6}{s['improved']:>2}+/"
            f"{s['worse']}- of {s['n']} {unit}, sign test p={sign}, MDE(80%) {mde}")


def _metric_lines(report: dict[str, Any]) -> list[str]:
    """Every transfer metric: mean accuracy per arm and each comparison over split means."""
    lines = ["every metric (mean accuracy per arm; differences over split means with 95 % CI; error ratio):"]
    for key, m in report["metrics"].items():
        accs = "  ".join(f"{_ARM[a]} {v:.3f}" for a, v in m["accuracy"].items())
        lines.append(f"  {METRIC_NAMES[key]:<27}{accs}")
        for c in (m[k] for k in report["comparisons"]):
            lines.append(f"    {c['label']:<17}{_signed(c['split_means']['mean']):>7} {_ci(c['split_means']):<19} "
                         f"error ratio {_ratio_ci(c['error_ratio'])}")
    return lines


def _placebo_lines(report: dict[str, Any]) -> list[str]:
    p = report.get("placebo_plan")
    if not p:
        return []
    return [f"placebo freezes {', '.join(p['layers'])} ({p['parameters']:,} weights) instead of "
            f"{', '.join(p['tagged_layers'])} ({p['tagged_parameters']:,}): parameter ratio {p['ratio']:.3f}"]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_ci(s: dict[str, Any]) -> str:
    return f"{_signed(s['mean'])} {_ci(s)}"


def format_markdown(report: dict[str, Any]) -> str:
    """The report's tables in Markdown (docs/results/): per split, overall over split means, every metric."""
    arms, comparisons = report["arms"], report["comparisons"]
    labels = [c["label"] for c in comparisons.values()]
    lines = [f"**Per split** (mean over seeds; {_metric_name(report)}; differences with the 95 % interval over "
             "seeds, error-rate ratio in brackets):", "",
             _md_row(["split", "seeds", "n", *(_ARM[a] for a in arms), *labels]),
             _md_row(["---"] * (3 + len(arms) + len(labels)))]
    for name, s in report["splits"].items():
        cells = [f"`{name}`", str(len(s["seeds"])), _span(s["n"]), *(f"{s['accuracy'][a]:.3f}" for a in arms)]
        cells += [f"{_md_ci(c['summary'])} ({_ratio(c['error_ratio'])})" for c in s["comparisons"].values()]
        lines.append(_md_row(cells))
    lines += ["", f"**Overall**, over the {len(report['splits'])} split means (the headline) and, secondary, over "
              "all runs:", "",
              _md_row(["comparison", "mean over splits [95 % CI]", "t-test p", "splits improved", "sign test p",
                       "MDE (80 %)", "error-rate ratio [95 % CI]", "over runs [95 % CI]"]),
              _md_row(["---"] * 8)]
    for c in comparisons.values():
        m = c["split_means"]
        lines.append(_md_row([c["label"], _md_ci(m), _p(m.get("t_p")), f"{c['splits_improved']}/{m['n']}",
                              _p(m["sign_p"]), _mde(m["mde"]), _ratio_ci(c["error_ratio"]), _md_ci(c["runs"])]))
    lines += ["", "**Every transfer metric** (mean accuracy per arm; differences over split means):", "",
              _md_row(["metric", *(_ARM[a] for a in arms), *labels]),
              _md_row(["---"] * (1 + len(arms) + len(labels)))]
    for key, m in report["metrics"].items():
        lines.append(_md_row([METRIC_NAMES[key], *(f"{m['accuracy'][a]:.3f}" for a in arms),
                              *(f"{_md_ci(m[k]['split_means'])}, ratio {_ratio_ci(m[k]['error_ratio'])}"
                                for k in comparisons)]))
    lines += [""] + [f"- {line}" for line in _placebo_lines(report)]
    lines += ["- " + _fits_line(report)] if report["probe_fits"]["fits"] else []
    if report.get("wall_seconds") is not None:
        walls = [r["wall_seconds"] for r in report["runs"]]
        lines.append(f"- wall time per run: mean {report['wall_seconds'] / 60:.1f} min (range "
                     f"{min(walls) / 60:.1f}–{max(walls) / 60:.1f}), {len(walls)} runs")
    return "\n".join(lines)


def write_report(out_dir: Path, report: dict[str, Any], plots: bool = True) -> dict[str, Any]:
    """Write ``report.json``, ``report.txt`` and (optionally) ``deltas.png`` for an aggregated report; returns it."""
    write_report_files(out_dir, report, format_table(report), format_markdown(report))
    if plots:
        plot_deltas(report, out_dir / "deltas.png")
    return report


def _draw(ax, series: Sequence[tuple[str, list[dict[str, Any]]]], title: str) -> None:
    for model, rows in series:
        if not rows:
            continue
        xs = [r["epoch"] for r in rows]
        ax.plot(xs, [r["train_accuracy"] for r in rows], "--", color=_COLOURS[model], label=f"{model} train")
        ax.plot(xs, [r["val_accuracy"] for r in rows], "-o", ms=3, color=_COLOURS[model], label=f"{model} val")
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
    for model in ("normal", "rff", "placebo", "aa"):
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


_COLOURS = {"shared": "black", "normal": "tab:blue", "rff": "tab:red", "placebo": "tab:purple", "aa": "tab:green",
            "rff_vs_placebo": "tab:orange"}
"""Colours of the arms (curves) and of the comparisons against normal named by their arm (deltas)."""


def plot_deltas(report: dict[str, Any], path: Path) -> None:
    """Left: per split each comparison's run deltas (dots) and mean with its 95 % interval over seeds, and, at
    the right end, the headline over split means.  Right: per split error-rate ratios and their geometric mean."""
    plt = pyplot("or pass --no-plots")
    names, keys = list(report["splits"]), list(report["comparisons"])
    width = 0.8 / len(keys)
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 1.3 * len(names) + 4), 4.5),
                                      gridspec_kw={"width_ratios": [3, 2]})
    for j, key in enumerate(keys):
        c = report["comparisons"][key]
        arm, ref, label = c["arm"], c["reference"], c["label"]
        colour, offset = _COLOURS[key], (j - (len(keys) - 1) / 2) * width
        for i, name in enumerate(names):
            runs = [r for r in report["runs"] if r["split"] == name]
            left.scatter([i + offset] * len(runs), [r[f"{arm}_accuracy"] - r[f"{ref}_accuracy"] for r in runs], s=8,
                         color=colour, alpha=0.4, zorder=2)
            _bar(left, i + offset, report["splits"][name]["comparisons"][key]["summary"], colour,
                 label if i == 0 else None)
        _bar(left, len(names) + offset, report["comparisons"][key]["split_means"], colour, None, marker="D")
        right.scatter(range(len(names)), [report["splits"][n]["comparisons"][key]["error_ratio"] or float("nan")
                                          for n in names], color=colour, s=16, label=label)
        ratio = report["comparisons"][key]["error_ratio"]
        if ratio["ci_low"] is not None:
            right.errorbar([len(names) + offset], [ratio["geomean"]], yerr=[[ratio["geomean"] - ratio["ci_low"]],
                           [ratio["ci_high"] - ratio["geomean"]]], fmt="D", color=colour, capsize=3)
    for ax in (left, right):
        ax.set_xticks(range(len(names) + 1), [*names, "all"], rotation=45, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    left.axhline(0, color="black", lw=0.8)
    right.axhline(1, color="black", lw=0.8)
    right.set_yscale("log")
    right.yaxis.set_major_formatter("{x:.2f}")
    right.yaxis.set_minor_formatter("{x:.2f}")
    left.set(ylabel="accuracy difference", title="differences: runs (dots), mean ± 95 % CI over seeds; "
             "'all': over split means")
    right.set(ylabel="error-rate ratio (log scale)", title="error / reference error per split; 'all': geometric mean")
    left.title.set_fontsize(8)
    right.title.set_fontsize(8)
    left.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path, force=True, dpi=110)


def _bar(ax, x: float, summary: dict[str, Any], colour: str, label: str | None, marker: str = "o") -> None:
    err = None if summary["ci_low"] is None else [[summary["mean"] - summary["ci_low"]],
                                                  [summary["ci_high"] - summary["mean"]]]
    ax.errorbar([x], [summary["mean"]], yerr=err, fmt=marker, ms=4, color=colour, capsize=3, zorder=3, label=label)
