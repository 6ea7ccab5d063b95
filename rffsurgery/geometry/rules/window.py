"""Attention restricted to windows, shifted or not (Swin, TinyViT, EfficientViT-M, halo attention).

A token that attends to every token of its window reads the whole window.  With
non-overlapping windows of size ``w`` that is a periodic map of period ``w``:
unit ``u`` reads ``[⌊u/w⌋·w, ⌊u/w⌋·w + w − 1]`` — :func:`window_map` with no shift.

Swin's *shifted* windows roll the map by ``−s`` before partitioning and back
afterwards, so in the original coordinates the windows start at ``s + k·w``: unit
``u`` reads ``[⌊(u−s)/w⌋·w + s, … + w − 1]``.  The windows at the border wrap
around the edge, but Swin's attention mask splits every such window into the part
from the top and the part from the bottom, so each border token reads only its own
part — exactly the periodic window clipped to the input, as for a padded conv.  The
mask adds −100 rather than −∞, so the far part does enter with a weight of about
e⁻¹⁰⁰; that is taken as zero, and said in a note.

Rather than trusting that argument for every implementation (torchvision pads
before rolling, timm rolls before padding), :func:`_check_windows` replays the
partition and the mask on the actual axis length and names every unit whose real
window is not the reported one.
"""

from __future__ import annotations

from torch import nn

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom, Track
from .base import compose, ntuple, tensor_geo

__all__ = ["halo_attention", "local_window_attention", "swin_block", "tiny_vit_block",
           "torchvision_window_attention", "window_map"]

MASK_NOTE = ("shifted windows: Swin's mask keeps each wrapped border window to its own edge "
             "(the far edge enters with weight e^-100, counted as 0)")


def window_map(window: int, shift: int = 0) -> AxisMap:
    """Unit ``u`` reads its whole window, windows starting at ``shift + k·w``: ``[⌊(u−s)/w⌋·w + s, … + w − 1]``."""

    def phase(j: int) -> tuple[int, int]:
        start = (j - shift) // window * window + shift
        return start, start + window - 1

    return AxisMap.from_function(window, window, phase)


def _groups(size: int, window: int, shift: int, pad_first: bool) -> list[list[int]]:
    """Replay pad → roll → partition → mask (or roll → pad → …) on one axis: who shares a group with whom.

    Returns, for each real position ``0 … size−1``, the real positions in its group.
    """
    padded = -(-size // window) * window
    rolled: list[int | None] = []
    for r in range(padded):
        if pad_first:
            p = (r + shift) % padded
        else:
            p = (r + shift) % size if r < size else r
        rolled.append(p if p < size else None)  # None: a padding token
    members: dict[tuple[int, int], list[int]] = {}
    for r, p in enumerate(rolled):
        region = 0 if not shift else (0 if r < padded - window else 1 if r < padded - shift else 2)
        if p is not None:
            members.setdefault((r // window, region), []).append(p)
    group_of = {p: key for key, ps in members.items() for p in ps}
    return [sorted(members[group_of[p]]) for p in range(size)]


def _check_windows(call: Call, axis: int, size: int, window: int, shift: int, pad_first: bool, m: AxisMap) -> None:
    """Note every unit whose replayed window differs from ``m`` clipped to the input."""
    wrong = []
    for u, group in enumerate(_groups(size, window, shift, pad_first)):
        lo, hi = m.interval(u)
        if group != list(range(max(lo, 0), min(hi, size - 1) + 1)):
            wrong.append(u)
    if wrong:
        shown = ", ".join(map(str, wrong[:6])) + (", …" if len(wrong) > 6 else "")
        call.notes.append(f"axis {axis}: units {shown} read another set than their window (the roll wraps "
                          "a window around the edge): their interval is not exact")


def windowed(call: Call, g: TensorGeom, dims: tuple[int, ...], windows: tuple[int, ...],
             shifts: tuple[int, ...], pad_first: bool, after: tuple[AxisMap | None, ...] = ()) -> TensorGeom:
    """Compose each listed dim's map with its window (then with ``after``, e.g. a local conv in the block)."""
    out = list(g.dims)
    shape = call.in_shape
    shifted = False
    for k, (d, w, s) in enumerate(zip(dims, windows, shifts)):
        t = out[d]
        if t is None or t.map is None:
            continue
        m = window_map(w, s)
        _check_windows(call, t.axis, shape[d], w, s, pad_first, m)
        shifted |= bool(s)
        m = t.map.then(m)
        if k < len(after) and after[k] is not None:
            m = m.then(after[k])
        out[d] = Track(t.axis, m)
    if shifted:
        call.notes.append(MASK_NOTE)
    return g.with_dims(out)


def torchvision_window_attention(call: Call) -> Geo:
    """torchvision's ``shifted_window_attention`` (Swin, Swin-V2) and ``…_3d`` (Swin3D) on (B, *space, C).

    torchvision pads to whole windows first, then rolls; an axis no longer than its
    window is one window and is not shifted.
    """
    g = tensor_geo(call)
    n = g.rank - 2
    windows = tuple(call.arg(4, "window_size"))
    shifts = list(call.arg(6, "shift_size"))
    if len(windows) != n or len(shifts) != n:
        raise RuleError(f"{n} spatial dims but window {windows} and shift {tuple(shifts)}")
    sizes = call.in_shape[1:-1]
    shifts = tuple(0 if w >= -(-size // w) * w else s for size, w, s in zip(sizes, windows, shifts))
    return windowed(call, g, tuple(range(1, n + 1)), windows, shifts, pad_first=True)


def swin_block(call: Call) -> Geo:
    """A timm Swin / Swin-V2 / Swin-V2-CR block on (B, H, W, C): window attention, then a per-token MLP.

    The residual reads the token itself, which lies in its own window, so the block
    reads exactly the window.  timm rolls before padding to whole windows.
    """
    m = call.module
    return windowed(call, tensor_geo(call), (1, 2), ntuple(m.window_size, 2), ntuple(m.shift_size, 2),
                    pad_first=False)


def tiny_vit_block(call: Call) -> Geo:
    """timm TinyViT block on (B, H, W, C): window attention (no shift), then its depthwise ``local_conv``."""
    m = call.module
    conv = m.local_conv.conv
    after = tuple(AxisMap.window(k, s, p, d) for k, s, p, d in
                  zip(conv.kernel_size, conv.stride, ntuple(conv.padding, 2), conv.dilation))
    if any(s != 1 for s in conv.stride):
        raise RuleError("TinyViT local conv with a stride")
    w = m.window_size
    return windowed(call, tensor_geo(call), (1, 2), (w, w), (0, 0), pad_first=True, after=after)


def local_window_attention(call: Call) -> Geo:
    """timm EfficientViT-M ``LocalWindowAttention`` on (B, C, H, W): attention within windows of ``attn.resolution``."""
    w = call.module.attn.resolution
    return windowed(call, tensor_geo(call), (2, 3), (w, w), (0, 0), pad_first=True)


def halo_attention(call: Call) -> Geo:
    """timm ``HaloAttn`` on (B, C, H, W): each block of ``block_size`` pixels attends to its block plus a halo.

    Output unit ``u`` (after the module's stride) lies in block ``⌊u / b⌋`` (``b``
    output units per block) and reads the input window ``[blk·block − halo,
    blk·block − halo + win − 1]``: the same interval for every unit of a block.
    """
    m = call.module
    per_block = m.block_size_ds
    block, halo, win = m.block_size, m.halo_size, m.win_size
    m_axis = AxisMap(per_block, block, (-halo,) * per_block, (-halo + win - 1,) * per_block).minimal()
    if isinstance(m.pool, nn.AvgPool2d):  # stride taken by a 2×2 average pool after the attention
        m_axis = m_axis.then(AxisMap.window(2, 2, 0))
    return compose(tensor_geo(call), {2: m_axis, 3: m_axis})
