"""Window attention, patch extraction and recurrences against the gradient (tests/gradient_rf.py).

Every unit of the checked nodes is compared, border units included: the engine's
interval clipped to the input must be exactly the bounding box of the input
gradient of the positive probe.  Swin's shifted windows add −100 to the attention
logits between the two edges a border window wraps around: in float64 that weight
(e⁻¹⁰⁰) still reaches the gradient, so the support is read above 1e-30 of its
largest value, and the wrapped units are checked to really touch the far edge
below it — which is what the note on those nodes says.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pytest
import timm
import torch
from timm.layers.halo_attn import HaloAttn
from timm.models.crossvit import scale_image
from timm.models.mobilenetv5 import MobileNetV5MultiScaleFusionAdapter
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer as TorchvisionSwin

from rffsurgery import analyze
from rffsurgery.geometry.rules.window import MASK_NOTE

from gradient_rf import GradientProbe

pytestmark = pytest.mark.usefixtures("one_thread")

Span = tuple[int, int] | None


def _support(probe: GradientProbe, value: torch.Tensor, index: Sequence[int], rel: float) -> tuple[Span, ...]:
    """Per axis, first and last input pixel whose gradient exceeds ``rel`` × the largest, for unit ``index``."""
    (grad,) = torch.autograd.grad(value[(0, slice(None), *index)].sum(), probe.input, retain_graph=True)
    mag = grad[0].abs().amax(dim=0)
    hit = mag > rel * mag.max()
    spans = []
    for axis in range(hit.dim()):
        others = tuple(a for a in range(hit.dim()) if a != axis)
        where = (hit.any(dim=others) if others else hit).nonzero().flatten()
        spans.append((int(where[0]), int(where[-1])) if len(where) else None)
    return tuple(spans)


def _clipped(layer, index: Sequence[int], extent: Sequence[int]) -> tuple[Span, ...]:
    out = []
    for a, n in enumerate(extent):
        axis = layer.axes[a]
        if axis is None:
            out.append((0, n - 1))
            continue
        lo, hi = axis.interval(index[a])
        out.append((max(lo, 0), min(hi, n - 1)))
    return tuple(out)


def _every(shape: Sequence[int]) -> list[tuple[int, ...]]:
    return [(i, j) for i in range(shape[0]) for j in range(shape[1])]


def check_every_unit(model: nn.Module, size: tuple[int, ...], names: list[str], channels_last: bool,
                     rel: float = 0.0, units: Callable[[Sequence[int]], list] = _every) -> dict[str, int]:
    """Engine vs gradient for the units of each node (all by default); per node, how many units the mask hides."""
    torch.manual_seed(0)
    model.eval()
    plan = analyze(model, size)
    assert plan.complete, [f"{l.name}: {l.reason}" for l in plan.unknown]
    probe = GradientProbe(model, size)
    values = probe.outputs(names)
    hidden: dict[str, int] = {}
    for name in names:
        layer = plan[name]
        value = values[name].permute(0, 3, 1, 2) if channels_last else values[name]
        failures, wrapped = [], 0
        for index in units(value.shape[2:]):
            want = _clipped(layer, index, probe.extent)
            got = _support(probe, value, index, rel)
            if got != want:
                failures.append(f"{name} {index}: engine {want}, gradient {got}")
            if rel and _support(probe, value, index, 0.0) != got:
                wrapped += 1
        assert not failures, "\n".join(failures[:20])
        hidden[name] = wrapped
    return hidden


def test_torchvision_swin_windows_and_shifted_windows_every_unit() -> None:
    model = TorchvisionSwin(patch_size=[2, 2], embed_dim=8, depths=[2], num_heads=[1], window_size=[4, 4],
                            num_classes=3)
    names = ["features.1.0", "features.1.1"]  # a plain and a shifted-window block (window 4, shift 2)
    hidden = check_every_unit(model, (3, 16, 16), names, channels_last=True, rel=1e-30)
    assert hidden["features.1.0"] == 0 and hidden["features.1.1"] > 0  # only shifted windows wrap
    plan = analyze(model, (3, 16, 16))
    assert MASK_NOTE in plan["features.1.1.attn.shifted_window_attention"].notes
    assert plan["features.1.0"].rf == (8, 8) and plan["features.1.1"].rf == (16, 16)


def test_torchvision_swin_odd_window_with_padding_every_unit() -> None:
    """Window 3, shift 1, 10×10 tokens: torchvision pads to 12 before rolling."""
    model = TorchvisionSwin(patch_size=[2, 2], embed_dim=8, depths=[2], num_heads=[1], window_size=[3, 3],
                            num_classes=3)
    check_every_unit(model, (3, 20, 20), ["features.1.0", "features.1.1"], channels_last=True, rel=1e-30)


def test_timm_swin_blocks_every_unit() -> None:
    model = timm.models.swin_transformer.SwinTransformer(img_size=16, patch_size=2, window_size=4, embed_dim=8,
                                                         depths=(2,), num_heads=(1,), num_classes=3)
    hidden = check_every_unit(model, (3, 16, 16), ["layers.0.blocks.0", "layers.0.blocks.1"], channels_last=True,
                              rel=1e-30)
    assert hidden["layers.0.blocks.1"] > 0


def test_efficientvit_local_window_attention_every_unit() -> None:
    """Windows of 7 on a 10×10 map: the second window is padded."""
    model = timm.create_model("efficientvit_m0", img_size=160)
    check_every_unit(model, (3, 160, 160), ["stages.0.blocks.0.mixer.m"], channels_last=False)


def test_tiny_vit_block_window_then_local_conv() -> None:
    """16×16 tokens in windows of 7 (padded to 21), then a 3×3 depthwise conv: every row, on two diagonals."""
    model = timm.create_model("tiny_vit_5m_224")
    plan = analyze(model, (3, 128, 128))
    assert plan["stages.1.blocks.0"].op == "TinyVitBlock"
    check_every_unit(model, (3, 128, 128), ["stages.1.blocks.0"], channels_last=True,
                     units=lambda shape: [(i, i) for i in range(shape[0])] + [(i, shape[1] - 1 - i) for i in range(shape[0])])


class Halo(nn.Module):
    def __init__(self, stride: int, avg_down: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = HaloAttn(8, 8, stride=stride, num_heads=1, block_size=4, halo_size=1,
                                         avg_down=avg_down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x))


@pytest.mark.parametrize("stride, avg_down", [(1, False), (2, False), (2, True)])
def test_halo_attention_every_unit(stride: int, avg_down: bool) -> None:
    """Blocks of 4 with a halo of 1; strided by the query conv, or by an average pool after the attention."""
    check_every_unit(Halo(stride, avg_down), (3, 16, 16), ["attn"], channels_last=False)


class Unfolds(nn.Module):
    """``Tensor.unfold`` windows (halo-style, overlapping) and ``nn.Unfold`` with one block along H."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.unfold = nn.Unfold((12, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        windows = y.unfold(2, 4, 2).unfold(3, 5, 3).sum((-2, -1))  # B, C, nH, nW
        columns = self.unfold(y).unsqueeze(2)  # B, C·36, 1, L: one block spans all of H
        return windows, columns


def test_unfold_every_unit() -> None:
    check_every_unit(Unfolds(), (3, 12, 20), ["sum", "unsqueeze"], channels_last=False)
    plan = analyze(Unfolds(), (3, 12, 20))
    assert plan["unsqueeze"].axes[0] is None and plan["unsqueeze"].axes[1] is not None


class RowColumnLSTM(nn.Module):
    """sequencer2d's LSTM2d in small: columns folded into the batch for the vertical scan, and vice versa."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.rnn_v = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
        self.rnn_h = nn.GRU(4, 3, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x).permute(0, 2, 3, 1)  # B, H, W, C
        B, H, W, C = y.shape
        v, _ = self.rnn_v(y.permute(0, 2, 1, 3).reshape(-1, H, C))
        v = v.reshape(B, W, H, -1).permute(0, 3, 2, 1)  # B, C, H, W
        h, _ = self.rnn_h(y.reshape(-1, W, C))
        h = h.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        return v, torch.cat([v, h], 1)


def test_recurrence_scanned_axis_global_other_exact() -> None:
    check_every_unit(RowColumnLSTM(), (3, 6, 7), ["permute_2", "cat"], channels_last=False)
    plan = analyze(RowColumnLSTM(), (3, 6, 7))
    assert plan["permute_2"].rf == ("global", 3) and plan["cat"].status == "global"


def test_recurrence_is_never_stepped_for_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shapes come from the module's configuration: running the LSTM at all would fail here."""

    def refuse(*args, **kwargs):
        raise AssertionError("the LSTM was run")

    plan_ok = analyze(RowColumnLSTM(), (3, 6, 7))
    monkeypatch.setattr(nn.LSTM, "forward", refuse)
    monkeypatch.setattr(nn.GRU, "forward", refuse)
    plan = analyze(RowColumnLSTM(), (3, 6, 7))
    assert [l.shape for l in plan] == [l.shape for l in plan_ok]


def test_recurrence_with_the_wrong_feature_size_is_a_shape_error() -> None:
    from rffsurgery.geometry.propagate import ShapeError

    model = nn.Sequential(nn.Flatten(2), nn.LSTM(5, 3))  # (1, 3, H·W) read as (seq 1, batch 3, 64 features)
    with pytest.raises(ShapeError, match="input_size"):
        analyze(model, 8)


class Scaled(nn.Module):
    """crossvit's ``scale_image``: bicubic resize, and the centre crop (a conv padding the crop would read zeros
    inside the image, where the unclipped interval reads pixels: no padding here)."""

    def __init__(self, crop: bool) -> None:
        super().__init__()
        self.crop = crop
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(scale_image(x, (9, 9), self.crop))


@pytest.mark.parametrize("crop", [False, True])
def test_crossvit_scale_image_every_unit(crop: bool) -> None:
    check_every_unit(Scaled(crop), (3, 12, 12), ["conv"], channels_last=False)


class Fusion(nn.Module):
    """MobileNetV5's multi-scale fusion of a full- and a half-resolution map, pooled or resized after."""

    def __init__(self, output_resolution: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.msfa = MobileNetV5MultiScaleFusionAdapter([4, 4], 4, output_resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        return self.msfa([a, self.c2(a)])


@pytest.mark.parametrize("output_resolution", [8, 6])
def test_mobilenetv5_fusion_adapter_every_unit(output_resolution: int) -> None:
    check_every_unit(Fusion(output_resolution), (3, 16, 16), ["msfa"], channels_last=False)


def test_untraceable_control_flow_names_the_construct() -> None:
    from rffsurgery.trace import TraceError

    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(TraceError, match=r"data-dependent control flow.*x\.sum\(\) > 0.*--leaf") as info:
        analyze(Branchy(), 8, capture="fx")
    assert "\n" not in str(info.value)
