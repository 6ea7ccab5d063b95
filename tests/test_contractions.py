"""einsum / matmul rules against gradient ground truth (tests/gradient_rf.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rffsurgery import analyze
from gradient_rf import GradientProbe, assert_exact, compare


class ChannelMix(nn.Module):
    """einsum over channels only: a 1x1 conv in disguise, the 3x3 RF must survive."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.w = nn.Parameter(torch.rand(4, 5))

    def forward(self, x):
        return torch.einsum("bchw,cd->bdhw", self.conv(x), self.w)


class RowMatmul(nn.Module):
    """NHWC linear via ``@`` on a permuted tensor, then a contraction over W (token mixing along rows)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, (3, 5), padding=(1, 2))
        self.w = nn.Parameter(torch.rand(4, 4))
        self.mix = nn.Parameter(torch.rand(12, 12))

    def forward(self, x):
        y = (self.conv(x).permute(0, 2, 3, 1) @ self.w).permute(0, 3, 1, 2)  # channels only
        return torch.einsum("...w,wv->...v", y, self.mix)  # mixes the whole W axis


def test_einsum_over_channels_keeps_the_rf():
    plan = analyze(ChannelMix(), (3, 12, 12))
    assert plan["einsum"].rf == (3, 3) and not plan["einsum"].global_context
    assert_exact(compare(plan, GradientProbe(ChannelMix(), plan.input_size), ["einsum"]))


def test_matmul_and_einsum_contracting_one_axis():
    plan = analyze(RowMatmul(), (3, 12, 12))
    assert plan["permute_1"].rf == (3, 5)
    assert plan["einsum"].rf == (3, "global")
    assert_exact(compare(plan, GradientProbe(RowMatmul(), plan.input_size), ["permute_1", "einsum"]))


@pytest.mark.parametrize("equation", ["bchw,bcij->bhw", "bchw,bcij->bchw"])
def test_attention_like_products_have_global_context(equation):
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.einsum(equation, y, y)

    plan = analyze(Attn(), (3, 10, 10))
    assert plan["einsum"].rf == (3, 3) and plan["einsum"].global_context


class BroadcastProduct(nn.Module):
    """An elementwise einsum of a map with one of its rows broadcast over the others, in either operand order."""

    def __init__(self, row_first: bool) -> None:
        super().__init__()
        self.row_first = row_first
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        row = x[:, :, 3:4]
        a, b = (row, x) if self.row_first else (x, row)
        return torch.einsum("bchw,bchw->bchw", a, b)


def test_einsum_answer_does_not_depend_on_operand_order() -> None:
    """Each operand is laid out at its own broadcast shape, whichever comes last (a product commutes)."""
    first, last = (analyze(BroadcastProduct(row_first), (3, 10, 9)).output() for row_first in (True, False))
    assert (first.rf, first.stride, first.padding, first.global_context, first.notes) == \
        (last.rf, last.stride, last.padding, last.global_context, last.notes)
