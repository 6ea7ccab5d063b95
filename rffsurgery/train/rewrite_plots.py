"""Plots of the rewrite experiment: accuracy against parameters per variant, and accuracy per epoch."""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any, Sequence

from ..plot import pyplot, save_figure

__all__ = ["plot_accuracy_vs_parameters", "plot_variant_curves"]

COLOURS = ("black", "tab:blue", "tab:red", "tab:green", "tab:purple")


def plot_accuracy_vs_parameters(report: dict[str, Any], path: Path) -> None:
    """Final accuracy of every run (dots) and its mean (diamond) against parameters; hollow: best accuracy."""
    plt = pyplot("or pass --no-plots")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for colour, (name, v) in zip(COLOURS * 4, report["variants"].items()):
        runs = [r for r in report["runs"] if r["variant"] == name]
        x = v["parameters"]
        ax.scatter([x] * len(runs), [r["final_accuracy"] for r in runs], s=14, color=colour, alpha=0.5, zorder=2)
        ax.scatter([x], [v["final_accuracy"]], marker="D", s=50, color=colour, zorder=3,
                   label=f"{name}: {x:,} params, final {v['final_accuracy']:.3f}")
        ax.scatter([x], [v["best_accuracy"]], marker="D", s=50, facecolors="none", edgecolors=colour, zorder=3)
    ax.set_xscale("log")
    ax.set(xlabel="parameters (log scale)", ylabel=f"accuracy on the {report['meta']['evaluation']} set",
           title=f"{report['meta']['model']}: accuracy vs parameters (filled: final, hollow: best)")
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
