"""Rewrites on paper: what one rewrite did (:func:`format_report`), and the rewrite experiment's table and plots.

Only formatting and drawing; the experiment (:mod:`rffsurgery.train.protocols.rewrite`)
hands over its report dict, the ``rewrite`` command its :class:`~rffsurgery.surgery.Rewritten`.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any, Sequence

from ..analysis.macs import count_params, macs
from ..files import write_report_files
from ..surgery.check import Check
from ..surgery.recipe import Rewritten
from .plot import pyplot, save_figure
from .table import si

__all__ = ["format_markdown", "format_report", "format_table", "plot_accuracy_vs_parameters", "plot_variant_curves", "write_report"]


COLOURS = ("black", "tab:blue", "tab:red", "tab:green", "tab:purple")


def plot_accuracy_vs_parameters(report: dict[str, Any], path: Path) -> None:
    """Final accuracy of every run (dots) and its mean (diamond) against parameters; hollow: selected accuracy."""
    plt = pyplot("or pass --no-plots")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for colour, (name, v) in zip(COLOURS * 4, report["variants"].items()):
        runs = [r for r in report["runs"] if r["variant"] == name]
        x = v["parameters"]
        ax.scatter([x] * len(runs), [r["final_accuracy"] for r in runs], s=14, color=colour, alpha=0.5, zorder=2)
        ax.scatter([x], [v["final_accuracy"]], marker="D", s=50, color=colour, zorder=3,
                   label=f"{name}: {x:,} params, final {v['final_accuracy']:.3f}")
        ax.scatter([x], [v["selected_accuracy"]], marker="D", s=50, facecolors="none", edgecolors=colour, zorder=3)
    ax.set_xscale("log")
    ax.set(xlabel="parameters (log scale)", ylabel=f"accuracy on the {report['meta']['evaluation']} set",
           title=f"{report['meta']['model']}: accuracy vs parameters\n(filled: final, hollow: selected epoch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, force=True, dpi=110)  # the experiment's own plot, rewritten on resume


def plot_variant_curves(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Per variant, mean over seeds per epoch: evaluation accuracy (solid) and training accuracy (dashed)."""
    plt = pyplot("or pass --no-plots")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(dict.fromkeys(r["variant"] for r in results))
    for colour, name in zip(COLOURS * 4, names):
        histories = [r["history"] for r in results if r["variant"] == name and r.get("history")]
        if not histories:
            continue
        epochs = range(1, min(len(h) for h in histories) + 1)
        for key, style, label in (("val_accuracy", "-o", "eval"), ("train_accuracy", "--", "train")):
            ax.plot(list(epochs), [mean(h[e - 1][key] for h in histories) for e in epochs], style, ms=3,
                    color=colour, label=f"{name} {label}")
    ax.set(xlabel="epoch", ylabel="accuracy", title=f"accuracy per epoch, mean over {len(histories)} seed(s)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, force=True, dpi=110)  # the experiment's own plot, rewritten on resume


def _ratio(before: int, after: int) -> str:
    return f"({after / before:.3g}×)" if before else ""


def format_report(rewritten: Rewritten, checks: list[Check] | None = None) -> str:
    """Per replaced layer and in total: parameters and MACs before → after; skips, notes and checks."""
    size = rewritten.input_size
    macs_before, macs_after = macs(rewritten.before, size), macs(rewritten.after, size)
    rows = [["layer", "params before → after", "MACs before → after", "change"]]
    for c in rewritten.changes:
        pb = count_params(rewritten.before.get_submodule(c.path))
        pa = count_params(rewritten.after.get_submodule(c.path))
        mb, ma = macs_before.get(c.path, 0), macs_after.get(c.path, 0)
        rows.append([c.path, f"{pb:,} → {pa:,} {_ratio(pb, pa)}", f"{si(mb)} → {si(ma)} {_ratio(mb, ma)}",
                     f"{c.before} → {c.after}"])
    pb, pa = count_params(rewritten.before), count_params(rewritten.after)
    mb, ma = macs_before[""], macs_after[""]
    rows.append(["total", f"{pb:,} → {pa:,} {_ratio(pb, pa)}", f"{si(mb)} → {si(ma)} {_ratio(mb, ma)}", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    name = rewritten.recipe.model or type(rewritten.before).__name__
    lines = [f"rewrite {name}: {len(rewritten.changes)} layer(s) replaced; MACs per sample at input "
             f"{'x'.join(map(str, size))}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[3] for r in rows]
    lines = [line.rstrip() for line in lines]
    lines += [f"note {c.path}: {c.note}" for c in rewritten.changes if c.note]
    lines += [f"skipped {s.path}: {s.reason}" for s in rewritten.skipped]
    lines += [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks or ()]
    return "\n".join(lines)


def _ci(summary: dict[str, Any]) -> str:
    if summary["ci_low"] is None:
        return f"{summary['mean']:+.3f}"
    return f"{summary['mean']:+.3f} [{summary['ci_low']:+.3f}, {summary['ci_high']:+.3f}]"


def format_table(report: dict[str, Any]) -> str:
    """One row per variant; differences are paired by seed (variant − original) with their 95 % interval."""
    base = next(iter(report["variants"].values()))  # the original model comes first
    rows = [["variant", "params", "MACs", "selected", "final", "Δselected vs original [95% CI]",
             "Δfinal vs original [95% CI]", "s/epoch"]]
    for name, v in report["variants"].items():
        rows.append([name, f"{v['parameters']:,} ({v['parameters'] / base['parameters']:.2f}×)",
                     f"{v['macs'] / 1e6:.2f}M", f"{v['selected_accuracy']:.3f}", f"{v['final_accuracy']:.3f}",
                     _ci(v["selected_delta"]) if "selected_delta" in v else "—",
                     _ci(v["final_delta"]) if "final_delta" in v else "—", f"{v['epoch_seconds']:.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    meta = report["meta"]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"seed {seed} (selected / final): " + ", ".join(
        f"{r['variant']} {r['selected_accuracy']:.3f} / {r['final_accuracy']:.3f}" for r in report["runs"]
        if r["seed"] == seed) for seed in meta["seeds"]]
    lines.append(f"{meta['model']} on {meta['source']} ({meta['classes']} classes, evaluated on the "
                 f"{meta['evaluation']} set); seeds {', '.join(map(str, meta['seeds']))}; selected = evaluation "
                 f"accuracy at the epoch chosen on {meta.get('selection_size', '?')} held-out training images; "
                 "s/epoch: single measurements")
    warnings = {d["warning"] for v in report["variants"].values() for d in (v.get("final_delta"),) if d and d["warning"]}
    lines += [f"warning: {w}" for w in sorted(warnings)]
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """The variant table in Markdown (docs/results/): accuracy against parameters, differences paired by seed."""
    base = next(iter(report["variants"].values()))
    meta = report["meta"]
    lines = [f"`{meta['model']}` on {meta['source']} ({meta['classes']} classes, {meta['train_size']:,} training "
             f"images, {meta.get('selection_size', 0):,} for epoch selection, evaluated on the {meta['eval_size']:,} "
             f"images of the {meta['evaluation']} set); seeds {', '.join(map(str, meta['seeds']))}; differences "
             "from the original paired by seed, with 95 % t-intervals:", "",
             "| variant | parameters | MACs | final accuracy | Δ final [95 % CI] | selected accuracy | "
             "Δ selected [95 % CI] | s/epoch |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, v in report["variants"].items():
        lines.append(f"| {name} | {v['parameters']:,} ({v['parameters'] / base['parameters']:.2f}×) | "
                     f"{v['macs'] / 1e6:.2f}M | {v['final_accuracy']:.4f} | "
                     f"{_ci(v['final_delta']) if 'final_delta' in v else '—'} | {v['selected_accuracy']:.4f} | "
                     f"{_ci(v['selected_delta']) if 'selected_delta' in v else '—'} | {v['epoch_seconds']:.1f} |")
    lines += ["", "Per seed (final accuracy): " + "; ".join(
        f"seed {seed}: " + ", ".join(f"{r['variant']} {r['final_accuracy']:.4f}" for r in report["runs"]
                                    if r["seed"] == seed) for seed in meta["seeds"])]
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any], results: Sequence[dict[str, Any]],
                 plots: bool = True) -> dict[str, Any]:
    """Write the rewrite experiment's ``report.json``, ``report.txt``, ``report.md`` and (optionally) its plots;
    returns the report."""
    write_report_files(out, report, format_table(report), format_markdown(report))
    if plots:
        plot_accuracy_vs_parameters(report, out / "accuracy_vs_parameters.png")
        plot_variant_curves(results, out / "curves.png")
    return report
