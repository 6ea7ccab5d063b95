"""Pictures of an analysis: RF per layer (``--plot``), ERF heat maps and ERF growth (``rffsurgery erf``).

Every figure is written through :mod:`rffsurgery.files` (atomic; an existing file only
with ``force``).  matplotlib is imported on first use, with the Agg backend, so
``import rffsurgery`` never pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..analysis.erf import ErfResult, NodeErf
from ..analysis.result import LayerRF, Plan
from ..errors import InvalidArgument, MissingDependency, RffError
from ..files import atomic_output, prepare_output
from ..tags import Tag

__all__ = ["draw_rf_box", "image_format", "plot_erf", "plot_erf_growth", "plot_rf", "pyplot", "save_figure"]


def pyplot(hint: str = "or leave out --plot") -> Any:
    """matplotlib's pyplot on the Agg backend; :class:`MissingDependency` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("plotting needs matplotlib, which is not installed: "
                                f"pip install 'rffsurgery[plot]' ({hint})") from None
    return plt


def image_format(path: str | Path) -> str:
    """The file format matplotlib will write for ``path`` (from its suffix; none means PNG), or a one-line error."""
    from matplotlib.backend_bases import FigureCanvasBase

    kind = Path(path).suffix.lstrip(".").lower() or "png"
    if kind not in FigureCanvasBase.get_supported_filetypes():
        raise InvalidArgument(f"cannot draw a plot as .{kind}: name the file .png, .svg or .pdf")
    return kind


def save_figure(fig: Any, path: str | Path, force: bool = False, option: str = "the plot", dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (refusing to replace a file unless ``force``) and close it."""
    plt = pyplot()
    path = prepare_output(path, force=force, option=option)
    try:
        kind = image_format(path)
        with atomic_output(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, format=kind)
    finally:
        plt.close(fig)
    return path


def _local(plan: "Plan") -> list["LayerRF"]:
    layers = [l for l in plan.main_layers() if l.status == "ok" and all(a is not None for a in l.axes)]
    if not layers:
        raise InvalidArgument(f"{plan.model_name} has no layer with a local receptive field to plot")
    return layers


def _name_axis(ax: Any, names: Sequence[str], tagged: set[str] = frozenset()) -> None:
    """Layer names under the x axis (every k-th when crowded), tagged ones in red."""
    every = max(1, len(names) // 60)
    ticks = list(range(0, len(names), every))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=6)
    for tick, i in zip(ax.get_xticklabels(), ticks):
        if names[i] in tagged:
            tick.set_color("crimson")
    ax.set_xlim(-0.5, len(names) - 0.5)


def _mark_strides(ax: Any, strides: Sequence[float]) -> None:
    """Shade every other run of layers at one effective stride and label it ``S=…``: where the resolution changes."""
    runs: list[tuple[int, int]] = []
    for i, s in enumerate(strides):
        if runs and strides[runs[-1][0]] == s:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    for k, (first, last) in enumerate(runs):
        if k % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="grey", alpha=0.12, lw=0)
        ax.text((first + last) / 2, 1.005, f"S={strides[first]:g}", ha="center", va="bottom", fontsize=7,
                color="dimgrey", transform=ax.get_xaxis_transform())


def plot_rf(plan: "Plan", path: str | Path, tags: Sequence["Tag"] = (), force: bool = False) -> Path:
    """RF per main layer (linear axes; the min–max band where it varies after upsampling), stride segments
    shaded and labelled, tagged layers dashed and named in red."""
    plt = pyplot()
    layers = _local(plan)
    xs = range(len(layers))
    tagged = {t.name for t in tags}
    fig, ax = plt.subplots(figsize=(max(8.0, len(layers) * 0.18), 5.5))
    axis_names = "HW" if plan.n_axes == 2 else [str(a) for a in range(plan.n_axes)]
    square = all(len(set(l.rf)) == 1 and len(set(l.rf_min)) == 1 for l in layers)
    for a in range(1 if square else plan.n_axes):
        label = "RF" if square else f"RF ({axis_names[a]})"
        line, = ax.plot(xs, [l.axes[a].size for l in layers], marker=".", lw=1.2, label=label)
        lows = [l.axes[a].min_size for l in layers]
        if any(lo != l.axes[a].size for lo, l in zip(lows, layers)):
            ax.fill_between(xs, lows, [l.axes[a].size for l in layers], color=line.get_color(), alpha=0.25,
                            label=f"{label}: range over positions")
    strides = [float(max(a.stride for a in l.axes)) for l in layers]
    _mark_strides(ax, strides)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("receptive field (input px)")
    for i, l in enumerate(layers):
        if l.name in tagged:
            ax.axvline(i, color="crimson", lw=0.8, ls="--")
    if tagged:
        ax.plot([], [], color="crimson", lw=0.8, ls="--", label=f"tagged ({len(tagged)})")
    _name_axis(ax, [l.name for l in layers], tagged)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    size = "x".join(map(str, plan.input_size))
    ax.set_title(f"{plan.model_name} ({size}): receptive field per layer; bands: effective stride S", pad=16)
    fig.tight_layout()
    return save_figure(fig, path, force, "--plot")


def _clip_box(spans: Sequence[tuple[int, int] | None], shape: Sequence[int]) -> tuple[tuple[int, int], ...] | None:
    """Inclusive (first, last) pixel per axis of a box clipped to an image of ``shape`` (``None``: the whole axis).

    ``None`` when the box lies wholly outside the image.
    """
    out = []
    for span, n in zip(spans, shape):
        lo, hi = span if span is not None else (0, n - 1)
        lo, hi = max(lo, 0), min(hi, n - 1)
        if lo > hi:
            return None
        out.append((lo, hi))
    return tuple(out)


def _box_patch(spans: Sequence[tuple[int, int] | None], shape: Sequence[int], **style: Any) -> tuple[Any, bool]:
    """A matplotlib Rectangle of the box clipped to the image, and whether clipping cut it.

    A box larger than the image would otherwise have every edge outside the axes: invisible.
    """
    from matplotlib.patches import Rectangle

    clipped = _clip_box(spans, shape)
    cut = clipped != tuple(span if span is not None else (0, n - 1) for span, n in zip(spans, shape))
    if clipped is None:
        return None, cut
    (r0, r1), (c0, c1) = clipped
    return Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, **style), cut


def draw_rf_box(ax: Any, interval: tuple[tuple[int, int] | None, ...], shape: Sequence[int], label: str) -> None:
    """The unit's theoretical RF, clipped to the image; the label says when it extends past the image."""
    patch, cut = _box_patch(interval, shape, ec="cyan", lw=1.5, ls="--")
    if cut:
        sides = "x".join(str(iv[1] - iv[0] + 1) if iv is not None else "global" for iv in interval)
        label += f" ({sides} px, past the {'x'.join(map(str, shape))} image: drawn clipped)"
    if patch is None:
        ax.plot([], [], color="cyan", lw=1.5, ls="--", label=label + ", wholly outside the image")
        return
    patch.set_label(label)
    ax.add_patch(patch)


def plot_erf(result: "ErfResult", node: "NodeErf", path: str | Path, force: bool = False) -> Path:
    """The ERF heat map (max = 1) with the theoretical RF box and the 50 % / 99 % squares, clipped to the image."""
    plt = pyplot()
    heat = node.heatmap
    peak = float(heat.max()) or 1.0
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    shown = ax.imshow((heat / peak).numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, label="|∂unit/∂input|, max = 1")
    if all(iv is not None for iv in node.interval):
        draw_rf_box(ax, node.interval, heat.shape, f"theoretical RF {'x'.join(map(str, dict.fromkeys(node.rf)))}")
    for fraction, colour in ((0.5, "lime"), (0.99, "white")):
        side = node.squares[fraction]
        patch, cut = _box_patch(node.square(fraction), heat.shape, ec=colour, lw=1)
        past = " (past the image: drawn clipped)" if cut else ""
        patch.set_label(f"{fraction:.0%} of the contribution: {side} px square{past}")
        ax.add_patch(patch)
    ax.set_xlim(-0.5, heat.shape[1] - 0.5)
    ax.set_ylim(heat.shape[0] - 0.5, -0.5)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.7)
    ax.set_title(f"{result.model} {node.node} unit {','.join(map(str, node.unit))}: effective RF\n"
                 f"weights: {result.weights}; {result.data}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, force, "the ERF plot")


def plot_erf_growth(result: "ErfResult", path: str | Path, force: bool = False) -> Path:
    """Per layer: the theoretical RF and the sides of the squares holding 50 % and 99 % of the ERF."""
    plt = pyplot()
    nodes = [n for n in result.nodes if all(iv is not None for iv in n.interval)]
    if not nodes:
        raise RffError("no node with a local receptive field to plot ERF growth for")
    xs = range(len(nodes))
    fig, ax = plt.subplots(figsize=(max(7.0, len(nodes) * 0.35), 5))
    ax.plot(xs, [max(n.rf) for n in nodes], marker="o", ms=3, label="theoretical RF (largest axis)")
    for fraction, style in ((0.99, "s-"), (0.5, "^-")):
        ax.plot(xs, [n.squares[fraction] for n in nodes], style, ms=3, label=f"ERF: square holding {fraction:.0%}")
    ax.axhline(max(result.input_size[1:]), color="grey", ls=":", lw=1, label="input side (ERF squares saturate)")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("input pixels")
    _name_axis(ax, [n.node for n in nodes])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{result.model}: ERF growth vs theoretical RF\nweights: {result.weights}; {result.data}",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, force, "the ERF growth plot")
