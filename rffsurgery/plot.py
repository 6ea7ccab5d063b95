"""``--plot rf.png``: RF size and effective stride per layer, tagged layers marked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import InvalidArgument, MissingDependency
from .files import atomic_output, prepare_output

if TYPE_CHECKING:
    from .analysis import Plan
    from .tags import Tag

__all__ = ["plot_rf", "pyplot"]


def pyplot(hint: str = "or leave out --plot"):
    """matplotlib's pyplot on the Agg backend; :class:`MissingDependency` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("plotting needs matplotlib, which is not installed: "
                                f"pip install 'rffsurgery[plot]' ({hint})") from None
    return plt


def plot_rf(plan: "Plan", path: str | Path, tags: Sequence["Tag"] = (), *, force: bool = False) -> Path:
    """Draw RF (log scale, per axis when they differ) and stride of the main layers in execution order.

    The PNG is written atomically; an existing file is replaced only with ``force``.
    """
    plt = pyplot()
    path = prepare_output(path, force=force, option="the plot")
    from matplotlib.backend_bases import FigureCanvasBase

    kind = path.suffix.lstrip(".").lower() or "png"
    if kind not in FigureCanvasBase.get_supported_filetypes():
        raise InvalidArgument(f"cannot draw a plot as .{kind}: name the file .png, .svg or .pdf")
    layers = [l for l in plan.main_layers() if l.status == "ok" and all(a is not None for a in l.axes)]
    if not layers:
        raise InvalidArgument(f"{plan.model_name} has no layer with a local receptive field to plot")
    xs = range(len(layers))
    tagged = {t.name for t in tags}
    fig, ax = plt.subplots(figsize=(max(8.0, len(layers) * 0.12), 4.5))
    axis_names = "HW" if plan.n_axes == 2 else [str(a) for a in range(plan.n_axes)]
    square = all(len(set(l.rf)) == 1 for l in layers)
    for a in range(1 if square else plan.n_axes):
        label = "RF" if square else f"RF ({axis_names[a]})"
        ax.plot(xs, [l.axes[a].size for l in layers], marker=".", lw=1.2, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("receptive field (input px)")
    ax.set_xlabel("layer (execution order)")
    twin = ax.twinx()
    twin.step(xs, [float(max(a.stride for a in l.axes)) for l in layers], where="post", color="grey", lw=1,
              label="stride")
    twin.set_yscale("log", base=2)
    twin.set_ylabel("effective stride")
    for i, l in enumerate(layers):
        if l.name in tagged:
            ax.axvline(i, color="crimson", lw=0.8, ls="--")
            ax.text(i, 0.02, f" {l.name}", rotation=90, fontsize=7, color="crimson", va="bottom",
                    transform=ax.get_xaxis_transform())
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    size = "x".join(map(str, plan.input_size))
    ax.set_title(f"{plan.model_name} ({size}): receptive field per layer; dashed = tagged ({len(tagged)})")
    fig.tight_layout()
    try:
        with atomic_output(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=120, format=kind)
    finally:
        plt.close(fig)
    return path
