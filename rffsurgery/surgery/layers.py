"""The layers of the parameter-saving rewrites (docs/rewrites.md): Meta, GroupedLinear, ChannelConv3d.

Every forward is built from ops the geometry rules table already knows
(``unflatten``/``einsum``/``transpose``/``matmul``/``F.conv2d``, plus indexing of parameters),
so a rewritten model traces with torch.fx, exports to ONNX, and ``analyze``
reports its receptive fields without a new rule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = ["ChannelConv3d", "GroupedLinear", "Meta"]


class Meta(nn.Module):
    """Mix ``n_in`` groups into ``n_out`` groups with one learnable scalar per pair.

    Input ``(*, n_in, *S)`` with the groups on dimension ``dim`` (default ``-2``, the
    layout :class:`GroupedLinear` produces); output ``(*, n_out, *S)`` with
    ``out[m] = Σ_n weight[n, m] · in[n]``.  Parameters: ``n_in · n_out`` (no bias —
    the paper's Meta has none, and the groups it mixes already carry biases).

    Initialisation (``init``):

    * ``"identity"`` (default): each output group starts as a copy of "its" input
      group(s) — exactly the identity when ``n_in == n_out``, so inserting a Meta
      changes nothing until training moves it (and a head initialised from old
      weights reproduces them).  When ``n_in > n_out`` output ``m`` sums the
      consecutive inputs ``n`` with ``n · n_out // n_in == m``, scaled by
      ``1/√count`` to keep the variance of independent groups; when ``n_in < n_out``
      output ``m`` copies input ``m · n_in // n_out``.
    * ``"randn"``: the authors' notebooks (``torch.randn(N, M)``, unscaled), for
      reproducing them; it multiplies the variance by about ``n_in``.
    """

    def __init__(self, n_in: int, n_out: int, dim: int = -2, init: str = "identity") -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"Meta needs positive group counts, got n_in={n_in}, n_out={n_out}")
        if init not in ("identity", "randn"):
            raise ValueError(f"Meta init must be 'identity' or 'randn', got {init!r}")
        self.n_in, self.n_out, self.dim, self.init = n_in, n_out, dim, init
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "randn":
                self.weight.normal_()
                return
            self.weight.zero_()
            n, m = self.n_in, self.n_out
            if n >= m:
                target = torch.arange(n) * m // n
                counts = torch.bincount(target, minlength=m).to(self.weight.dtype)
                self.weight[torch.arange(n), target] = counts[target].rsqrt()
            else:
                self.weight[torch.arange(m) * n // m, torch.arange(m)] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.transpose(self.dim, -1) @ self.weight).transpose(self.dim, -1)

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_out}, dim={self.dim}"


class GroupedLinear(nn.Module):
    """``groups`` independent Linear(K/G → L) on contiguous slices of the last dimension.

    Input ``(*, K)``, output ``(*, G, L)``: group ``g`` reads features
    ``g·K/G … (g+1)·K/G − 1`` and writes ``out[..., g, :]``.  The weight is one
    ``(G, K/G, L)`` tensor and the forward one ``einsum`` (a batched matmul over the
    groups), not a loop.  Parameters: ``G·(K/G)·L + G·L`` (weights + biases);
    multiply-accumulates per input row ``K·L``, G times fewer than Linear(K → G·L).
    Initialised like ``nn.Linear(K/G, L)`` per group.
    """

    def __init__(self, in_features: int, groups: int, out_per_group: int, bias: bool = True) -> None:
        super().__init__()
        if groups < 1 or in_features % groups:
            raise ValueError(f"{groups} groups do not divide {in_features} input features")
        if out_per_group < 1:
            raise ValueError(f"out_per_group must be positive, got {out_per_group}")
        self.in_features, self.groups, self.out_per_group = in_features, groups, out_per_group
        self.weight = nn.Parameter(torch.empty(groups, in_features // groups, out_per_group))
        self.bias = nn.Parameter(torch.empty(groups, out_per_group)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features // self.groups)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("...gk,gkl->...gl", x.unflatten(-1, (self.groups, -1)), self.weight)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        k = self.in_features // self.groups
        return f"{self.groups}×({k} → {self.out_per_group}), bias={self.bias is not None}"


class ChannelConv3d(nn.Module):
    """A Conv2d(C → D) replacement that slides one small kernel along the channel axis.

    The paper's layer (docs/rewrites.md): the C input maps are a depth axis, ``s`` (``filters``)
    kernels of size ``(u, kh, kw)`` slide along it with stride 1 and no depth padding,
    giving ``D = (C − u + 1)·s`` maps; output channel ``f·Z + z`` (``Z = C − u + 1``) is
    filter ``f`` applied to input channels ``z … z+u−1``.  Hence ``u = C − D/s + 1``
    (the paper's formula; the authors' notebooks instead used u = 3 with depth padding 1,
    which keeps depth C and does not follow it).  Stride, padding, dilation and padding
    mode act on H and W exactly as in the Conv2d, so the spatial receptive field is
    unchanged.  Parameters: ``(kh·kw·u + 1)·s`` versus ``(kh·kw·C + 1)·D``.

    **How it runs.**  Not as a ``Conv3d`` (slow on CPU, and not what oneDNN/cuDNN tune):
    each forward gathers the banded (Toeplitz along channels) Conv2d weight
    ``W[f·Z + z, z + j] = weight[f, j]`` (zero off the band) from the small ``weight``
    through a fixed index buffer, and runs one ``F.conv2d``.  Gradients reach only
    ``weight`` (the gather's backward sums the band back).  The conv therefore does the
    Conv2d's ``D·C·kh·kw`` multiply-accumulates per output pixel, zeros included — C/u
    times the ``D·u·kh·kw`` that carry weight; it costs a Conv2d's time, and what it
    saves is parameters.  With ``u = C`` and ``s = D`` it is exactly a Conv2d
    (see :meth:`from_conv2d`).

    ``state_dict``: ``weight`` ``(s, u, kh, kw)`` and ``bias`` ``(s,)``; files written
    when the layer held a ``Conv3d`` (``conv.weight`` ``(s, 1, u, kh, kw)``,
    ``conv.bias``) are converted on load.
    """

    _version = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], filters: int,
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__()
        depth = channel_depth(in_channels, out_channels, filters)
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        self.in_channels, self.out_channels, self.filters, self.depth = in_channels, out_channels, filters, depth
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.padding_mode = _pair(padding), _pair(dilation), padding_mode
        self.weight = nn.Parameter(torch.empty(filters, depth, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(filters)) if bias else None
        self.register_buffer("band", band_index(in_channels, depth, filters), persistent=False)
        self.register_buffer("bias_index", torch.arange(filters).repeat_interleave(in_channels - depth + 1),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv3d(1, s, (u, kh, kw))``'s initialisation (fan-in ``u·kh·kw``), as the paper's layer had."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, filters: int) -> "ChannelConv3d":
        """Same geometry as ``conv``; when ``filters == conv.out_channels`` (u = C) its weights are copied.

        String paddings are resolved to integers ('same' only when it is symmetric).
        """
        if conv.groups != 1:
            raise ValueError(f"grouped conv (groups={conv.groups}) has no channel-sliding equivalent")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, filters, conv.stride,
                  int_padding(conv), conv.dilation, conv.bias is not None, conv.padding_mode)
        new.to(device=conv.weight.device, dtype=conv.weight.dtype)
        if new.depth == conv.in_channels:
            with torch.no_grad():
                new.weight.copy_(conv.weight)
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
        return new

    def banded_weight(self) -> torch.Tensor:
        """The equivalent Conv2d weight ``(D, C, kh, kw)``: the kernels on the band, zeros elsewhere."""
        kernels = self.weight.flatten(0, 1)
        flat = torch.cat([kernels, kernels.new_zeros(1, *self.kernel_size)])  # slot s·u holds the zeros
        return flat.index_select(0, self.band.flatten()).view(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias[self.bias_index] if self.bias is not None else None
        padding = self.padding
        if self.padding_mode != "zeros":
            (ph, pw), padding = self.padding, (0, 0)
            x = F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode)
        return F.conv2d(x, self.banded_weight(), bias, self.stride, padding, self.dilation)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        if (local_metadata or {}).get("version", 1) < 2:  # the Conv3d form: conv.weight (s, 1, u, kh, kw)
            for name in ("weight", "bias"):
                old = state_dict.pop(f"{prefix}conv.{name}", None)
                if old is not None:
                    state_dict[prefix + name] = old.squeeze(1) if name == "weight" else old
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"{self.in_channels} → {self.out_channels}: {self.filters} filters × depth {self.depth}"


def band_index(in_channels: int, depth: int, filters: int) -> torch.Tensor:
    """``(D, C)`` indices into the flattened ``(s·u + 1)`` kernels: ``f·u + (c − z)`` on the band, else ``s·u``.

    Row ``f·Z + z`` (``Z = C − u + 1``) is filter ``f`` at channel offset ``z``.
    """
    z_count = in_channels - depth + 1
    f = torch.arange(filters).repeat_interleave(z_count)[:, None]
    z = torch.arange(z_count).repeat(filters)[:, None]
    j = torch.arange(in_channels)[None, :] - z
    on_band = (j >= 0) & (j < depth)
    return torch.where(on_band, f * depth + j, torch.full_like(j, filters * depth))


def channel_depth(in_channels: int, out_channels: int, filters: int) -> int:
    """The paper's ``u = C − D/s + 1``; ValueError when no valid u exists."""
    if filters < 1 or out_channels % filters:
        raise ValueError(f"{filters} filters do not divide {out_channels} output channels")
    depth = in_channels - out_channels // filters + 1
    if depth < 1:
        raise ValueError(f"D/s = {out_channels // filters} exceeds C = {in_channels} (would need u = {depth} < 1); "
                         f"use at least {math.ceil(out_channels / in_channels)} filters")
    return depth


def int_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """A Conv2d's padding as two integers ('valid' → 0; 'same' when its split is symmetric)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        totals = [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation)]
        if any(t % 2 for t in totals):
            raise ValueError("padding='same' with an even effective kernel pads asymmetrically")
        return tuple(t // 2 for t in totals)
    return tuple(conv.padding)
