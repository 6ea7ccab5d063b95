"""Meta, GroupedLinear, ChannelConv3d against the paper's formulas and plain PyTorch layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rffsurgery import analyze
from rffsurgery.surgery import ChannelConv3d, GroupedLinear, Meta
from rffsurgery.analysis.macs import macs
from rffsurgery.trace import trace


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- parameter counts: docs/rewrites.md -------------------------------------------------------
@pytest.mark.parametrize("c, d, s, k", [(32, 64, 8, 3), (64, 64, 4, 3), (3, 32, 32, 5), (16, 48, 3, 1), (10, 10, 10, 7)])
def test_conv3d_params_follow_the_paper(c, d, s, k):
    u = c - d // s + 1
    layer = ChannelConv3d(c, d, k, filters=s)
    assert layer.depth == u
    assert n_params(layer) == (k * k * u + 1) * s
    assert n_params(nn.Conv2d(c, d, k)) == (k * k * c + 1) * d  # the baseline the paper compares with
    assert layer(torch.randn(1, c, 9, 9)).shape == (1, d, 10 - k, 10 - k)


@pytest.mark.parametrize("k, h, g", [(4096, 64, 4), (2048, 512, 16), (25088, 4096, 16), (12, 6, 3), (8, 8, 1)])
def test_grouped_fc_meta_params_follow_the_paper(k, h, g):
    l = h // g
    head = nn.Sequential(GroupedLinear(k, g, l, bias=False), Meta(g, g))
    assert n_params(head) == g * (k // g) * l + g * g
    assert n_params(GroupedLinear(k, g, l)) == g * (k // g) * l + g * l  # + one bias per output


def test_macs_follow_the_formulas():
    """The channel-sliding layer runs as a banded Conv2d: it executes the Conv2d's MACs, zeros included."""
    c, d, s, k, side = 32, 64, 8, 3, 16
    conv = nn.Conv2d(c, d, k, padding=1)
    assert macs(conv, (c, side, side))[""] == d * side * side * c * k * k
    assert macs(ChannelConv3d.from_conv2d(conv, s), (c, side, side))[""] == d * side * side * c * k * k
    head = nn.Sequential(GroupedLinear(4096, 4, 16), Meta(4, 4))
    assert macs(head, (4096,))[""] == 4096 * 16 + 4 * 4 * 16


# -- exact equivalence: u = C, s = D is a Conv2d ------------------------------------------
CONVS = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 5), stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(kernel_size=4, stride=3, padding=2, dilation=2, bias=False),
    dict(kernel_size=5, padding="same", dilation=2),
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=(1, 2), padding_mode="circular"),
]


@pytest.mark.parametrize("options", CONVS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_full_depth_conv3d_is_the_conv2d(options):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, **options)
    layer = ChannelConv3d.from_conv2d(conv, filters=7)
    x = torch.randn(2, 5, 13, 11)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(c=st.integers(1, 6), d=st.integers(1, 6), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), side=st.integers(8, 12))
def test_full_depth_conv3d_is_the_conv2d_everywhere(c, d, k, stride, padding, dilation, side):
    conv = nn.Conv2d(c, d, k, stride, padding, dilation)
    layer = ChannelConv3d.from_conv2d(conv, filters=d)
    x = torch.randn(1, c, side, side)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


def test_channel_sliding_is_a_conv_along_the_channels():
    """Output channel f·(C−u+1) + z is filter f applied to input channels z … z+u−1."""
    c, d, s = 6, 8, 2
    layer = ChannelConv3d(c, d, 3, filters=s, padding=1)
    u, x = layer.depth, torch.randn(2, c, 7, 7)
    weight, bias = layer.weight, layer.bias  # (s, u, 3, 3)
    expected = torch.cat([F.conv2d(x[:, z:z + u], weight[f:f + 1], bias[f:f + 1], padding=1)
                          for f in range(s) for z in range(c - u + 1)], dim=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c, d, s, message", [(4, 8, 3, "do not divide"), (4, 16, 2, "exceeds C")])
def test_conv3d_without_a_valid_depth_is_refused(c, d, s, message):
    with pytest.raises(ValueError, match=message):
        ChannelConv3d(c, d, 3, filters=s)


def test_grouped_and_asymmetric_same_convs_are_refused():
    with pytest.raises(ValueError, match="groups=4"):
        ChannelConv3d.from_conv2d(nn.Conv2d(8, 8, 3, groups=4), 8)
    with pytest.raises(ValueError, match="asymmetrically"):
        ChannelConv3d.from_conv2d(nn.Conv2d(8, 8, 4, padding="same"), 8)


def test_conv3d_keeps_the_spatial_receptive_field():
    """By hand: a 3×3 conv (RF 3, padding 1), then a 3×3 dilation-2 kernel (span 5) of stride 2 and
    padding 2: RF 3 + (5 − 1)·1 = 7, stride 2, padding 1 + 2·1 = 3."""
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ChannelConv3d.from_conv2d(conv, filters=4))
    layer = analyze(net, (3, 32, 32))["1"]
    assert layer.rf == (7, 7) and layer.stride == (2, 2) and layer.padding == (3, 3)


# -- grouped FC + Meta --------------------------------------------------------------------
def test_one_group_and_unit_meta_is_a_plain_fc():
    torch.manual_seed(0)
    fc = nn.Linear(12, 5)
    grouped = GroupedLinear(12, 1, 5)
    with torch.no_grad():
        grouped.weight.copy_(fc.weight.T.unsqueeze(0))
        grouped.bias.copy_(fc.bias.unsqueeze(0))
    head = nn.Sequential(grouped, Meta(1, 1), nn.Flatten(-2))
    x = torch.randn(4, 12)
    torch.testing.assert_close(head(x), fc(x))
    with torch.no_grad():
        head[1].weight.fill_(-2.5)  # a 1×1 Meta scales the FC
    torch.testing.assert_close(head(x), -2.5 * fc(x))


def test_grouped_linear_is_independent_fcs_on_contiguous_slices():
    g, k, l = 4, 3, 2
    layer = GroupedLinear(g * k, g, l)
    x = torch.randn(5, 7, g * k)  # leading dims pass through
    expected = torch.stack([x[..., i * k:(i + 1) * k] @ layer.weight[i] + layer.bias[i] for i in range(g)], dim=-2)
    torch.testing.assert_close(layer(x), expected)


def test_grouped_linear_is_one_batched_op_for_any_group_count():
    for groups in (1, 4, 16):
        graph = trace(GroupedLinear(64, groups, 8)).graph
        assert sum(n.op == "call_function" and n.target is torch.einsum for n in graph.nodes) == 1
        assert len(graph.nodes) == 7  # placeholder, unflatten, 2 get_attr, einsum, add, output


def test_meta_mixes_whole_groups():
    meta = Meta(3, 2, dim=1, init="randn")
    x = torch.randn(2, 3, 4, 5)  # 3 groups of 4×5 maps
    w = meta.weight
    expected = torch.stack([sum(w[n, m] * x[:, n] for n in range(3)) for m in range(2)], dim=1)
    torch.testing.assert_close(meta(x), expected)


@pytest.mark.parametrize("n_in, n_out", [(4, 4), (6, 3), (5, 2), (2, 5)])
def test_meta_identity_init_keeps_every_group_and_its_variance(n_in, n_out):
    w = Meta(n_in, n_out).weight.detach()
    if n_in == n_out:
        assert torch.equal(w, torch.eye(n_in))
    assert (w != 0).sum(0).min() >= 1 and (w != 0).sum(1).min() >= 1  # every group used, every output fed
    torch.testing.assert_close((w**2).sum(0), torch.ones(n_out))  # unit gain for independent groups


def test_invalid_layer_arguments():
    with pytest.raises(ValueError, match="do not divide"):
        GroupedLinear(10, 3, 2)
    with pytest.raises(ValueError, match="init"):
        Meta(2, 2, init="zeros")
