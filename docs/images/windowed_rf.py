"""Draw docs/images/windowed_rf.png: per-unit receptive fields after window attention and space-to-depth.

Every bar is one unit along the rows of a node, from the engine itself
(``analyze(model)[node].interval(unit)``), clipped to the input: the units of a
window read the same span (period w), a grid attention's units read every g-th
window, and a conv over space-to-depth blocks, put back to pixels, reads the same
blocks for both pixels of a block (period 2).  Run: ``python docs/images/windowed_rf.py`` (needs matplotlib).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from rffsurgery import analyze  # noqa: E402

SIZE = 32
OUT = Path(__file__).with_suffix(".png")


def windows(x: torch.Tensor, w: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return x.view(B, C, H // w, w, W // w, w).permute(0, 2, 4, 3, 5, 1).reshape(-1, w * w, C)


def unwindow(t: torch.Tensor, w: int, H: int, W: int) -> torch.Tensor:
    C = t.shape[-1]
    return t.view(-1, H // w, W // w, w, w, C).permute(0, 5, 1, 3, 2, 4).reshape(-1, C, H, W)


def grid(x: torch.Tensor, g: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return x.view(B, C, g, H // g, g, W // g).permute(0, 3, 5, 2, 4, 1).reshape(-1, g * g, C)


def ungrid(t: torch.Tensor, g: int, H: int, W: int) -> torch.Tensor:
    C = t.shape[-1]
    return t.view(-1, H // g, W // g, g, g, C).permute(0, 5, 3, 1, 4, 2).reshape(-1, C, H, W)


def attend(t: torch.Tensor) -> torch.Tensor:
    return torch.softmax(t @ t.transpose(1, 2), -1) @ t


class Windows(nn.Module):
    """A conv stem, attention in windows of 4, then (MaxViT's) attention in a grid of 4 (cells of 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        H, W = y.shape[-2:]
        y = y + unwindow(attend(windows(y, 4)), 4, H, W)
        return y + ungrid(attend(grid(y, 4)), 4, H, W)


class SpaceToDepth(nn.Module):
    """Space-to-depth by 2 (a view), a 3×3 conv over the blocks, depth-to-space back (``pixel_shuffle``)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        s = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, C * 4, H // 2, W // 2)
        return F.pixel_shuffle(F.relu(self.dense(s)), 2)


def bars(ax: plt.Axes, model: nn.Module, node: str, title: str) -> None:
    layer = analyze(model, (3, SIZE, SIZE))[node]
    period = layer.axes[0].map.period
    for u in range(layer.grid[0]):
        (lo, hi), _ = layer.interval((u, 0))
        lo, hi = max(lo, 0), min(hi, SIZE - 1)
        ax.plot([u, u], [lo, hi + 1], lw=2.4, solid_capstyle="butt", color=plt.cm.tab10(u % period % 10))
    stride = layer.stride[0]
    ax.set_title(f"{title}\nRF {layer.rf[0]}, stride {stride}, period {period}", fontsize=9)
    ax.set_xlabel(f"unit along the rows of {node}", fontsize=8)
    ax.set_xlim(-1, layer.grid[0])
    ax.set_ylim(SIZE, 0)
    ax.tick_params(labelsize=7)


def main() -> None:
    torch.manual_seed(0)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), sharey=True)
    win, s2d = Windows(), SpaceToDepth()
    plan = analyze(win, (3, SIZE, SIZE))
    first, second = [l.name for l in plan if l.op == "add"][:2]
    bars(axes[0], win, "stem", "3×3 conv (stem)")
    bars(axes[1], win, first, "+ attention in windows of 4")
    bars(axes[2], win, second, "+ attention in a grid of 4")
    bars(axes[3], s2d, "pixel_shuffle", "space-to-depth, 3×3 conv, back")
    axes[0].set_ylabel("input rows read (clipped)", fontsize=8)
    fig.suptitle("Per-unit receptive fields through reshapes (rffsurgery, colour = phase in the period)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
