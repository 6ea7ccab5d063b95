"""Patch extraction and its inverse: ``Tensor.unfold``, ``nn.Unfold`` / ``F.unfold`` (im2col), ``nn.Fold`` / ``F.fold``.

Both unfolds cut the input into windows of ``k`` at stride ``s``.  The offset
inside a window goes to a dim of its own (``Tensor.unfold``) or into the channels
(``F.unfold``): like channels, those units are summed when a receptive field is
read, so the window index keeps an exact map, ``AxisMap.window(k, s, p, d)``.

``F.unfold`` lists the windows of both axes in one dim ``L``, row-major: that dim
carries the two window indices as digits (the block row and column), so each
column of the output reads its own window exactly.  Windows that tile the image
(kernel = stride, no padding) are a space-to-depth: the offsets in the channels are
the low digits of the axes, and every pixel stays a unit.  ``F.fold`` sums the columns
back onto the image: an output pixel reads every window that covers it, the map
of a transposed convolution.
"""

from __future__ import annotations

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..factors import Spread, regroup
from ..tensor import Digit, Geo
from .base import bound, ntuple, slide_or_bound, tensor_geo
from .conv import transposed_map

__all__ = ["fold", "tensor_unfold", "unfold"]


def tensor_unfold(call: Call) -> Geo:
    """``x.unfold(dim, size, step)``: dim → window index (exact), a new last dim for the offset."""
    g = tensor_geo(call)
    dim = call.arg(1, "dimension") % g.rank
    size, step = call.arg(2, "size"), call.arg(3, "step")
    spread = Spread.of(g, call.in_shape)
    if spread.axes_in(dim):
        slide_or_bound(call, spread, dim, AxisMap.window(size, step, 0), call.out_shape[dim],
                       "unfold along a dim that merges factors")
    spread.dims.append([])
    spread.lead.append(0)
    spread.trail.append(0)
    return spread.geom(g, call.out_shape)


def _params(call: Call, n: int, first: int) -> list[tuple[int, int, int, int]]:
    """(kernel, stride, padding, dilation) per axis, from the module or from the call (``first``: kernel_size's index)."""
    m = call.module
    if m is not None:
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    else:
        k = call.arg(first, "kernel_size")
        d, p, s = call.arg(first + 1, "dilation", 1), call.arg(first + 2, "padding", 0), call.arg(first + 3, "stride", 1)
    return list(zip(ntuple(k, n), ntuple(s, n), ntuple(p, n), ntuple(d, n)))


def unfold(call: Call) -> Geo:
    """``nn.Unfold`` / ``F.unfold`` on (N, C, H, W) → (N, C·kh·kw, L), L listing the windows row-major."""
    g = tensor_geo(call)
    if g.rank != 4:
        raise RuleError(f"unfold of a {g.rank}-D input")
    params = _params(call, 2, 1)
    blocks = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, (k, s, p, d) in zip(call.in_shape[2:], params)]
    spread = Spread.of(g, call.in_shape)
    if all(k == s and p == 0 and d == 1 and n == k * b for (k, s, p, d), n, b in zip(params, call.in_shape[2:], blocks)):
        tiled = _tiles(spread, [k for k, _, _, _ in params], blocks, call.in_shape)
        if tiled:
            return spread.geom(g, call.out_shape)
    for d, (k, s, p, dil), n in zip((2, 3), params, blocks):
        if spread.axes_in(d):
            slide_or_bound(call, spread, d, AxisMap.window(k, s, p, dil), n, "unfold along a dim that merges factors")
    columns = [_plain(spread, d, size) for d, size in ((2, blocks[0]), (3, blocks[1]))]
    channels = _plain(spread, 1, call.in_shape[1])
    spread.dims = [spread.dims[0], channels + [Digit(None, 1, params[0][0] * params[1][0])], columns[0] + columns[1]]
    spread.lead, spread.trail = [spread.lead[0], 0, 0], [spread.trail[0], 0, 0]
    return spread.geom(g, call.out_shape)


def _tiles(spread: Spread, kernel: list[int], blocks: list[int], shape: tuple[int, ...]) -> bool:
    """Windows that tile the image: the offset inside a window is the low digit of its axis (space-to-depth).

    The channels become ``(c, row offset, column offset)`` and ``L`` the window
    row and column, so each pixel stays a unit of its own (TNT's inner tokens).
    ``False`` when the dims cannot be dealt out that way.
    """
    rows, cols = (regroup(_plain(spread, d, shape[d]), [b, k]) for d, b, k in zip((2, 3), blocks, kernel))
    if rows is None or cols is None:
        return False
    channels = _plain(spread, 1, shape[1])
    spread.dims = [spread.dims[0], channels + rows[1] + cols[1], rows[0] + cols[0]]
    spread.lead, spread.trail = [spread.lead[0], 0, 0], [spread.trail[0], 0, 0]
    return True


def _plain(spread: Spread, d: int, size: int) -> list[Digit]:
    """Dim ``d`` as digits, or one plain factor where it has extra elements."""
    return spread.digits_at(d, size) or [Digit(None, 1, size)]


def fold(call: Call) -> Geo:
    """``nn.Fold`` / ``F.fold`` on (N, C·kh·kw, L) → (N, C, H, W): every pixel reads the windows covering it.

    ``L`` must list the windows row-major, one digit per axis (as ``F.unfold`` left
    them); otherwise the columns are not followed (an outer bound).
    """
    g = tensor_geo(call)
    if g.rank != 3:
        raise RuleError(f"fold of a {g.rank}-D input")
    m = call.module
    size = m.output_size if m is not None else call.arg(1, "output_size")
    params = _params(call, 2, 2)
    blocks = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, (k, s, p, d) in zip(ntuple(size, 2), params)]
    spread = Spread.of(g, call.in_shape)
    bound(call, "fold of channels with factors", spread, spread.axes_in(1))
    parts = regroup(_plain(spread, 2, call.in_shape[2]), blocks)
    whole = parts is not None and all(len(part) <= 1 and all(x.axis is not None and spread.digits_of(x.axis) == [x]
                                                             for x in part) for part in parts)
    if not whole:
        bound(call, "fold of columns that do not list the windows", spread, spread.axes_in(2))
        parts = [[], []]
    out = Spread([spread.dims[0], [], *map(list, parts)], [spread.lead[0], 0, 0, 0], [spread.trail[0], 0, 0, 0],
                 spread.maps)
    for d, (k, s, p, dil), part in zip((2, 3), params, parts):
        if part:
            slide_or_bound(call, out, d, transposed_map(k, s, p, dil), call.out_shape[d], "fold")
    return out.geom(g, call.out_shape)
