"""Patch extraction: ``Tensor.unfold`` and ``nn.Unfold`` / ``F.unfold`` (im2col).

Both cut the input into windows of ``k`` at stride ``s``.  The offset inside a
window goes to a dim of its own (``Tensor.unfold``) or into the channels
(``F.unfold``): like channels, those units are summed when a receptive field is
read, so the window index keeps an exact map, ``AxisMap.window(k, s, p, d)``.

``F.unfold`` also lists the windows of every spatial axis in one dim ``L``; one
dim cannot carry two axes, so the axes merged there become global, as after a
flatten (a note says so).  With one spatial axis of more than one window, that
axis keeps its map.
"""

from __future__ import annotations

from ..algebra import AxisMap
from ..call import Call, RuleError
from ..tensor import Geo, Track
from .base import compose, ntuple, tensor_geo

__all__ = ["tensor_unfold", "unfold"]


def tensor_unfold(call: Call) -> Geo:
    """``x.unfold(dim, size, step)``: dim → window index (exact), a new last dim for the offset."""
    g = tensor_geo(call)
    dim = call.arg(1, "dimension") % g.rank
    size, step = call.arg(2, "size"), call.arg(3, "step")
    g = compose(g, {dim: AxisMap.window(size, step, 0)})
    return g.with_dims([*g.dims, None])


def unfold(call: Call) -> Geo:
    """``nn.Unfold`` / ``F.unfold`` on (N, C, H, W) → (N, C·kh·kw, L)."""
    m = call.module
    if m is not None:
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    else:
        k = call.arg(1, "kernel_size")
        d, p, s = call.arg(2, "dilation", 1), call.arg(3, "padding", 0), call.arg(4, "stride", 1)
    g = tensor_geo(call)
    n = g.rank - 2
    if n != 2:
        raise RuleError(f"unfold of a {g.rank}-D input")
    windows = [AxisMap.window(*a) for a in zip(ntuple(k, n), ntuple(s, n), ntuple(p, n), ntuple(d, n))]
    blocks = [(size + 2 * pi - di * (ki - 1) - 1) // si + 1
              for size, ki, si, pi, di in zip(call.in_shape[2:], ntuple(k, n), ntuple(s, n), ntuple(p, n), ntuple(d, n))]
    tracked = [(g.dims[2 + a], windows[a]) for a in range(n) if blocks[a] > 1 and g.dims[2 + a] is not None]
    if len(tracked) == 1 and tracked[0][0].map is not None:
        t, w = tracked[0]
        return g.with_dims([g.dims[0], None, Track(t.axis, t.map.then(w))])
    if tracked:
        call.notes.append("unfold lists the windows of both axes in one dim: those axes become global")
    return g.with_dims([g.dims[0], None, None])
