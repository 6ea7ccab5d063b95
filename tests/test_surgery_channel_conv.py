"""The fast ChannelConv3d (one banded F.conv2d) against the Conv3d form it replaced and a plain loop.

Two independent references: ``Conv3dForm`` is the layer as it was before (a real
``nn.Conv3d`` over the channels as depth, kept here only as a reference), and
``loop_reference`` sums ``weight[f, j] ⋆ x[z + j]`` one 2-D correlation at a time.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rffsurgery.export import export_onnx
from rffsurgery.surgery import ChannelConv3d, rewrite
from rffsurgery.surgery.check import check


class Conv3dForm(nn.Module):
    """The previous implementation: (B, C, H, W) → (B, 1, C, H, W) → Conv3d → flatten(1, 2)."""

    def __init__(self, layer: ChannelConv3d) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, layer.filters, (layer.depth, *layer.kernel_size), stride=(1, *layer.stride),
                              padding=(0, *layer.padding), dilation=(1, *layer.dilation),
                              bias=layer.bias is not None, padding_mode=layer.padding_mode)
        with torch.no_grad():
            self.conv.weight.copy_(layer.weight.unsqueeze(1))
            if layer.bias is not None:
                self.conv.bias.copy_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1)).flatten(1, 2)


def loop_reference(layer: ChannelConv3d, x: torch.Tensor) -> torch.Tensor:
    """Output map f·Z + z = Σ_j weight[f, j] ⋆ x[:, z + j] (+ bias[f]), one single-channel conv per term."""
    (ph, pw), padding = layer.padding, layer.padding
    if layer.padding_mode != "zeros":
        x, padding = F.pad(x, (pw, pw, ph, ph), mode=layer.padding_mode), 0
    z_count = layer.in_channels - layer.depth + 1
    maps = []
    for f in range(layer.filters):
        for z in range(z_count):
            out = sum(F.conv2d(x[:, z + j:z + j + 1], layer.weight[f, j][None, None], None, layer.stride, padding,
                               layer.dilation) for j in range(layer.depth))
            maps.append(out + (layer.bias[f] if layer.bias is not None else 0))
    return torch.cat(maps, dim=1)


LAYERS = [
    dict(in_channels=6, out_channels=8, kernel_size=3, filters=2, padding=1),
    dict(in_channels=5, out_channels=6, kernel_size=(3, 5), filters=3, stride=(2, 1), padding=(0, 2),
         dilation=(1, 2)),
    dict(in_channels=4, out_channels=4, kernel_size=1, filters=1, bias=False),            # u = 1: a shared kernel
    dict(in_channels=7, out_channels=7, kernel_size=3, filters=7),                         # u = C: a Conv2d
    dict(in_channels=8, out_channels=8, kernel_size=3, filters=2, padding=1, padding_mode="reflect"),
    dict(in_channels=6, out_channels=4, kernel_size=2, filters=4, stride=2, padding=(1, 2), padding_mode="circular"),
]
IDS = [f"C{o['in_channels']}-D{o['out_channels']}-s{o['filters']}-{o.get('padding_mode', 'zeros')}" for o in LAYERS]


def _pair_up(options: dict) -> tuple[ChannelConv3d, torch.Tensor]:
    torch.manual_seed(0)
    layer = ChannelConv3d(**options)
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.normal_()  # non-trivial biases, so a misplaced bias shows
    return layer, torch.randn(3, layer.in_channels, 11, 10)


@pytest.mark.parametrize("options", LAYERS, ids=IDS)
def test_outputs_match_the_conv3d_form_and_the_loop(options):
    layer, x = _pair_up(options)
    fast = layer(x)
    torch.testing.assert_close(fast, Conv3dForm(layer)(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, loop_reference(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", LAYERS, ids=IDS)
def test_gradients_match_the_conv3d_form(options):
    layer, x = _pair_up(options)
    reference = Conv3dForm(layer)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn_like(layer(x))
    (layer(x1) * upstream).sum().backward()
    (reference(x2) * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, reference.conv.weight.grad.squeeze(1), rtol=1e-4, atol=1e-4)
    if layer.bias is not None:
        torch.testing.assert_close(layer.bias.grad, reference.conv.bias.grad, rtol=1e-4, atol=1e-4)


def test_only_the_small_kernels_are_parameters():
    layer = ChannelConv3d(64, 64, 3, filters=8, padding=1)
    assert {n: tuple(p.shape) for n, p in layer.named_parameters()} == {"weight": (8, 57, 3, 3), "bias": (8,)}
    assert sum(p.numel() for p in layer.parameters()) == (3 * 3 * 57 + 1) * 8  # papers.md §2
    assert set(layer.state_dict()) == {"weight", "bias"}  # the index buffers are not saved
    band = layer.banded_weight()
    assert band.shape == (64, 64, 3, 3) and band.grad_fn is not None  # built from the kernels each call
    # every kernel value appears once per channel offset: Z = 8 times, and nothing else is non-zero
    assert torch.count_nonzero(band.detach().flatten(1).abs().sum(1) != 0) == 64
    assert torch.count_nonzero(band.detach()) == 8 * 8 * 57 * 9


def test_state_dicts_of_the_conv3d_form_load(tmp_path):
    """A file saved when the layer held a Conv3d (keys conv.weight (s,1,u,kh,kw), conv.bias) still loads."""
    torch.manual_seed(0)
    old = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
    old.add_module("2", Conv3dForm(ChannelConv3d(6, 8, 3, filters=2, padding=1)))
    path = tmp_path / "old.pt"
    torch.save(old.state_dict(), path)
    assert "2.conv.weight" in torch.load(path, weights_only=True)
    new = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), ChannelConv3d(6, 8, 3, filters=2, padding=1))
    new.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(new(x), old(x), rtol=1e-5, atol=1e-5)


def test_rewritten_base_cnn_exports_to_onnx_and_keeps_its_receptive_fields(tmp_path):
    done = rewrite("rff-base-cnn", conv3d_filters=8)
    assert all(c.ok for c in check(done)), check(done)  # trace, forward, backward, analyze keeps every RF
    result = export_onnx(done.after, done.input_size, tmp_path / "m.onnx")
    assert result.ok, str(result)
