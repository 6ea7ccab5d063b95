"""Reshapes that split or merge spatial axes (windows, grids, tokens, space-to-depth), against the gradient.

Each model here is a few lines of the kind real architectures write with ``view``,
``permute``, ``reshape`` and ``torch.roll``.  For every checked node and every unit
(one index per spatial axis), the elements the engine names for the unit
(:func:`rffsurgery.analysis.select_unit`, checked first to partition the tensor)
must have an input gradient whose bounding box is the engine's interval clipped to
the input (tests/gradient_rf.py: positive weights, no non-linearities).  Before
factors were tracked, every node after the first such reshape was reported global.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from rffsurgery import Plan, analyze

from gradient_rf import Case, GradientProbe, compare_layout, every_unit, positive_copy

pytestmark = pytest.mark.usefixtures("one_thread")


def clipped(case: Case) -> tuple:
    """The engine's interval of a case clipped to the input (a global axis: all of it)."""
    return tuple((0, n - 1) if e is None else (max(e[0], 0), min(e[1], n - 1)) for e, n in zip(case.engine, case.extent))


def check(model: nn.Module, size: tuple[int, ...], names: list[str]) -> Plan:
    """Every unit of every named node (``"output"``: the model's output): the engine's interval clipped to the
    input is exactly the bounding box of the gradient, border units included."""
    torch.manual_seed(0)
    plan = analyze(model, size)
    assert plan.complete, [f"{l.name}: {l.reason}" for l in plan.unknown]
    assert not [l.name for l in plan if l.bounded]
    names = [plan.output().name if n == "output" else n for n in names]
    cases = compare_layout(plan, GradientProbe(model, size), names)
    wrong = [str(c) for c in cases if c.got != clipped(c)]
    assert not wrong, f"{len(wrong)}/{len(cases)} units differ:\n" + "\n".join(wrong[:20])
    return plan


def partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) → (B·H/w·W/w, w·w, C), Swin's window_partition."""
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def reverse(t: torch.Tensor, w: int, H: int, W: int) -> torch.Tensor:
    """Swin's window_reverse: (B·H/w·W/w, w·w, C) → (B, H, W, C)."""
    C = t.shape[-1]
    return t.view(-1, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def grid_partition(x: torch.Tensor, g: int) -> torch.Tensor:
    """MaxViT's grid_partition: a g×g grid of cells, each window holding one token per cell."""
    B, H, W, C = x.shape
    x = x.view(B, g, H // g, g, W // g, C).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, g * g, C)


def grid_reverse(t: torch.Tensor, g: int, H: int, W: int) -> torch.Tensor:
    C = t.shape[-1]
    t = t.view(-1, H // g, W // g, g, g, C).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(-1, H, W, C)


class Attention(nn.Module):
    """Softmax attention over the tokens of dim 1, written with matmuls; an optional additive mask."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = q @ k.transpose(-2, -1)
        if mask is not None:
            attn = attn + mask
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class WindowBlock(nn.Module):
    """conv → windows → mean over each window's tokens or softmax attention → windows back → residual → conv."""

    def __init__(self, w: int, mix: str) -> None:
        super().__init__()
        self.w, self.mix = w, mix
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = Attention(8)
        self.out = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        B, H, W, C = y.shape
        t = partition(y, self.w)
        if self.mix == "mean":
            t = t.mean(1, keepdim=True).expand(-1, self.w * self.w, -1)
        else:
            t = self.attn(t)
        y = y + reverse(t, self.w, H, W)
        return self.out(y.permute(0, 3, 1, 2))


@pytest.mark.parametrize("mix", ["mean", "attention"])
def test_window_partition_and_reverse_every_unit(mix: str) -> None:
    model = WindowBlock(4, mix)
    names = ["reshape_1", "attn.proj" if mix == "attention" else "mean", "add", "out"]
    check(model, (3, 12, 16), names)
    plan = analyze(model, (3, 12, 16))
    assert plan["add"].windowed == (4, 4) and plan["add"].rf == (6, 6)  # the 3×3 conv's window of 4
    # a 3×3 conv after windows: a unit at a window's edge also reads the next window
    assert plan["out"].rf == (10, 10) and plan["out"].rf_min == (6, 6) and not plan["out"].global_context


class BlockGrid(nn.Module):
    """MaxViT in small: attention in w×w blocks, then in a g×g grid (one token per cell)."""

    def __init__(self, w: int, g: int, block: bool = True) -> None:
        super().__init__()
        self.w, self.g, self.block = w, g, block
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.block_attn = Attention(8)
        self.grid_attn = Attention(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        B, H, W, C = y.shape
        if self.block:
            y = y + reverse(self.block_attn(partition(y, self.w)), self.w, H, W)
        y = y + grid_reverse(self.grid_attn(grid_partition(y, self.g)), self.g, H, W)
        return y.permute(0, 3, 1, 2)


def test_grid_attention_every_unit() -> None:
    """A grid alone: unit u reads the tokens u mod (H/g) + k·H/g, a local periodic map; after blocks that
    cover the whole cell it reads everything, and is global."""
    grid = check(BlockGrid(4, 4, block=False), (3, 16, 12), ["grid_attn.proj", "output"])
    assert grid.output().windowed == (16, 12)  # one period: the whole axis, each unit reading its own span
    check(BlockGrid(2, 4), (3, 16, 12), ["block_attn.proj", "add", "grid_attn.proj", "output"])
    blocks_of_cells = check(BlockGrid(4, 4), (3, 16, 16), ["add", "output"])  # windows of 4 = cells of 16/4
    assert blocks_of_cells.output().status == "global"


def swin_mask(H: int, W: int, w: int, s: int) -> torch.Tensor:
    """Swin's attention mask for windows rolled by s: tokens of different regions never meet (-inf)."""
    region = torch.zeros(1, H, W, 1)
    cuts = (slice(0, -w), slice(-w, -s), slice(-s, None))
    for k, (a, b) in enumerate((a, b) for a in cuts for b in cuts):
        region[:, a, b, :] = k
    ids = partition(region, w).squeeze(-1)
    return torch.zeros(ids.shape[0], w * w, w * w).masked_fill(ids[:, None, :] != ids[:, :, None], float("-inf"))


class ShiftedWindows(nn.Module):
    """Swin's shifted windows written out: roll by −s, windows with a region mask, windows back, roll by s."""

    def __init__(self, H: int, W: int, w: int, s: int, masked: bool = True) -> None:
        super().__init__()
        self.w, self.s = w, s
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = Attention(8)
        self.register_buffer("mask", swin_mask(H, W, w, s)[:, None] if masked else torch.zeros(1, 1, w * w, w * w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        B, H, W, C = y.shape
        t = self.attn(partition(torch.roll(y, (-self.s, -self.s), (1, 2)), self.w), self.mask)
        y = y + torch.roll(reverse(t, self.w, H, W), (self.s, self.s), (1, 2))
        return y.permute(0, 3, 1, 2)


def test_shifted_windows_with_roll_every_unit() -> None:
    """Rolled, windowed and rolled back: every window reads itself, the windows that wrap read both edges.

    Without a mask that is exact for every unit.  With Swin's mask a wrapped window's
    two parts never meet, which the engine does not read: exact everywhere else, an
    outer bound there (the roll's note says so).
    """
    plan = check(ShiftedWindows(16, 12, 4, 2, masked=False), (3, 16, 12), ["attn.proj", "roll_1", "output"])
    assert plan.output().rf == (18, 14)  # a window that wraps reads both edges (and breaks the period of 4)
    assert any("wraps around the edge" in n for n in plan["roll"].notes)
    model = ShiftedWindows(16, 12, 4, 2)
    plan = analyze(model, (3, 16, 12))
    cases = compare_layout(plan, GradientProbe(model, (3, 16, 12)), ["roll_1", plan.output().name])
    wrapped = {(i, j) for i in range(16) for j in range(12) if not (2 <= i < 14 and 2 <= j < 10)}
    differ = {c.index for c in cases if c.got != clipped(c)}
    assert differ and differ <= wrapped
    assert all(replace(c, border="within").ok for c in cases)  # within the reported window


def s2d_view(x: torch.Tensor, r: int) -> torch.Tensor:
    """einops ``rearrange('b c (h p1) (w p2) -> b (c p1 p2) h w')`` as it traces: view, permute, reshape."""
    B, C, H, W = x.shape
    return x.view(B, C, H // r, r, W // r, r).permute(0, 1, 3, 5, 2, 4).reshape(B, C * r * r, H // r, W // r)


def s2d_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """``pixel_unshuffle`` written with view (channel order c, then the offsets)."""
    B, C, H, W = x.shape
    return x.reshape(B, C, H // r, r, W // r, r).permute(0, 1, 3, 5, 2, 4).flatten(1, 3)


def s2d_focus(x: torch.Tensor, r: int) -> torch.Tensor:
    """YOLOv5's ``Focus``: strided slices concatenated (channel order: the offset, then c)."""
    assert r == 2
    return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


def d2s_view(x: torch.Tensor, r: int) -> torch.Tensor:
    """einops ``rearrange('b (c p1 p2) h w -> b c (h p1) (w p2)')``."""
    B, C, H, W = x.shape
    return x.view(B, C // (r * r), r, r, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, C // (r * r), H * r, W * r)


class SpaceToDepth(nn.Module):
    """Space-to-depth four ways, then a dense and a depthwise conv, then depth-to-space back."""

    def __init__(self, how: str, back: str) -> None:
        super().__init__()
        self.how, self.back = how, back
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.dense = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.stem(x)
        s = {"view": s2d_view, "unshuffle-view": s2d_unshuffle, "pixel_unshuffle": F.pixel_unshuffle,
             "focus": s2d_focus}[self.how](y, 2)
        sub = self.depthwise(s)  # per sub-pixel channel: a periodic map
        back = d2s_view(sub, 2) if self.back == "view" else F.pixel_shuffle(sub, 2)
        return back, self.dense(s)


@pytest.mark.parametrize("how, back", [("view", "view"), ("unshuffle-view", "pixel_shuffle"),
                                       ("pixel_unshuffle", "view"), ("focus", "pixel_shuffle")])
def test_space_to_depth_and_back_every_unit(how: str, back: str) -> None:
    """Sub-pixel channels are units of their own (exact per sub-pixel); a conv over them reads the 2×2 blocks."""
    plan = analyze(SpaceToDepth(how, back), (3, 12, 10))
    s2d = plan["depthwise"].inputs[0]
    names = [s2d, "depthwise", "dense"] + [n for n in plan.layers if n.startswith(("reshape", "pixel_shuffle"))][-1:]
    check(SpaceToDepth(how, back), (3, 12, 10), names)
    if how == "focus":  # strided slices concatenated: a unit is a 2×2 block, every channel of it
        assert plan[s2d].grid == (6, 5) and plan[s2d].rf == (4, 4) and plan["dense"].rf == (8, 8)
        return
    assert plan[s2d].grid == (12, 10) and plan[s2d].rf == (3, 3)  # one input pixel per unit (after the stem)
    # per sub-pixel: unit 2q + j reads the stem's units 2(q−1) + j … 2(q+1) + j, a hull of 1 + 2·2 + 2 pixels
    assert plan["depthwise"].rf == (7, 7) and plan["depthwise"].stride == (1, 1)
    assert plan["dense"].rf == (8, 8) and plan["dense"].stride == (2, 2)  # 3 blocks of 2, plus the stem's 2


class PatchEmbed(nn.Module):
    """A ViT patch embedding by reshape and Linear (no conv), tokens back to a map, a conv."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p = p
        self.embed = nn.Linear(3 * p * p, 8)
        self.conv = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.p
        t = x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // p) * (W // p), C * p * p)
        t = self.embed(t)
        return self.conv(t.transpose(1, 2).reshape(B, 8, H // p, W // p))


def test_patch_embedding_by_reshape_every_unit() -> None:
    plan = check(PatchEmbed(4), (3, 16, 12), ["reshape", "embed", "conv"])
    assert plan["reshape"].rf == (1, 1) and plan["reshape"].grid == (16, 12)  # pixels, spread over channels
    assert plan["embed"].rf == (4, 4) and plan["embed"].stride == (4, 4) and plan["embed"].grid == (4, 3)
    assert plan["conv"].rf == (12, 12)


class ViTTokens(nn.Module):
    """Patch tokens with a class token in front, a position embedding, then attention over all tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos = nn.Parameter(torch.zeros(1, 13, 8))
        self.attn = Attention(8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return t[:, 1:], self.attn(t)[:, 1:]


def test_class_token_keeps_patch_tokens_local_until_attention() -> None:
    plan = check(ViTTokens(), (3, 16, 12), ["add", "getitem_1", "getitem_2"])
    assert plan["add"].rf == (4, 4) and plan["add"].layout[1].lead == 1  # the class token holds no unit
    assert plan["attn.proj"].status == "global"  # attention over every token reads the whole image


class TNT(nn.Module):
    """TNT in small: nn.Unfold cuts 4×4 patches, inner attention over each patch's pixels, outer tokens from a
    Linear over the flattened patch, then outer attention over all patches."""

    def __init__(self) -> None:
        super().__init__()
        self.unfold = nn.Unfold(4, stride=4)
        self.pixel = nn.Linear(3, 8)
        self.inner = Attention(8)
        self.outer_proj = nn.Linear(16 * 8, 8)
        self.outer = Attention(8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = x.shape[0]
        patches = self.unfold(x)  # B, 3·16, N
        N = patches.shape[-1]
        pixels = patches.transpose(1, 2).reshape(B * N, 3, 16).transpose(1, 2)  # B·N, 16 pixels, 3
        inner = self.inner(self.pixel(pixels))  # within each patch
        outer = self.outer_proj(inner.reshape(B, N, 16 * 8))  # one token per patch
        return inner, outer, self.outer(outer)


def test_tnt_inner_and_outer_tokens_every_unit() -> None:
    plan = check(TNT(), (3, 16, 12), ["unfold", "pixel", "inner.proj", "outer_proj", "outer.proj"])
    assert plan["unfold"].grid == (16, 12) and plan["pixel"].rf == (1, 1)  # tiling windows: every pixel a unit
    assert plan["inner.proj"].rf == (4, 4) and plan["inner.proj"].windowed == (4, 4)  # attention within a patch
    assert plan["outer_proj"].grid == (4, 3) and plan["outer_proj"].stride == (4, 4)  # one token per patch
    assert plan["outer.proj"].status == "global"


class Audio1d(nn.Module):
    """1-D: conv over time, attention in windows of 8 frames, a conv over the windows' output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 5, stride=2, padding=2)
        self.attn = Attention(8)
        self.out = nn.Conv1d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).transpose(1, 2)  # B, T, C
        B, T, C = y.shape
        t = self.attn(y.reshape(B * T // 8, 8, C)).reshape(B, T, C)
        return self.out(t.transpose(1, 2))


def test_audio_windows_every_unit() -> None:
    plan = check(Audio1d(), (1, 64), ["attn.proj", "out"])
    assert plan["attn.proj"].windowed == (8,) and plan["attn.proj"].rf == (19,)


class Video3d(nn.Module):
    """3-D: a conv over (T, H, W), 3-D windows (2×4×4) with attention and with a mean, windows back."""

    def __init__(self, mix: str) -> None:
        super().__init__()
        self.mix = mix
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.attn = Attention(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 4, 1)  # B, T, H, W, C
        B, T, H, W, C = y.shape
        t = y.view(B, T // 2, 2, H // 4, 4, W // 4, 4, C).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, 32, C)
        t = self.attn(t) if self.mix == "attention" else t.mean(1, keepdim=True).expand(-1, 32, -1)
        t = t.view(B, T // 2, H // 4, W // 4, 2, 4, 4, C).permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(B, T, H, W, C)
        return (y + t).permute(0, 4, 1, 2, 3)


@pytest.mark.parametrize("mix", ["attention", "mean"])
def test_video_windows_every_unit(mix: str) -> None:
    plan = check(Video3d(mix), (3, 4, 8, 8), ["output"])
    assert plan.output().windowed == (2, 4, 4) and plan.output().rf == (4, 6, 6)


def window_attention() -> nn.Module:
    """A factory for the CLI: ``rffsurgery analyze tests/test_factors.py:window_attention``."""
    return WindowBlock(4, "attention")


def test_unit_erf_and_json_on_a_window_token_node() -> None:
    """``--unit``, the ERF and the JSON work where the axes live in windows folded into the batch and tokens."""
    import json

    from click.testing import CliRunner

    from rffsurgery.analysis.erf import erf
    from rffsurgery.cli import main

    plan = analyze(window_attention(), (3, 12, 16))
    (r0, r1), (c0, c1) = plan["attn.proj"].interval((5, 6))
    assert (r0, r1, c0, c1) == (3, 8, 3, 8)  # window (1, 1) of 4 tokens, plus the 3×3 stem
    spec = f"{__file__}:window_attention"
    done = CliRunner().invoke(main, ["analyze", spec, "--input-size", "3,12,16", "--node", "attn.proj",
                                     "--unit", "5,6"])
    assert done.exit_code == 0 and f"rows {r0}…{r1}" in done.output and f"cols {c0}…{c1}" in done.output
    bad = CliRunner().invoke(main, ["analyze", spec, "--input-size", "3,12,16", "--node", "attn.proj",
                                    "--unit", "12,0"])
    assert bad.exit_code == 1 and "12x16 positions" in bad.output
    data = json.loads(CliRunner().invoke(main, ["analyze", spec, "--input-size", "3,12,16", "--json"]).output)
    node = next(n for n in data["nodes"] if n["name"] == "attn.proj")
    assert node["windowed"] == [4, 4] and node["grid"] == [12, 16]
    assert node["layout"][0]["digits"] == [[0, 4, 3], [1, 4, 4]]  # windows (row, column) folded into the batch
    torch.manual_seed(0)
    result = erf(window_attention(), ["attn.proj"], unit=(5, 6), input_size=(3, 12, 16), images=2)
    assert result.nodes[0].interval == ((r0, r1), (c0, c1))
    support = (result.nodes[0].heatmap > 0).nonzero()
    assert (support[:, 0].min(), support[:, 0].max(), support[:, 1].min(), support[:, 1].max()) == (r0, r1, c0, c1)


# -- a block fx cannot trace, replayed op by op: EfficientViT's linear attention (LiteMLA) -------------------
class _CutTokenSums(TorchFunctionMode):
    """Detaches the first matmul, LiteMLA's ``kᵀ v`` (a sum over every token): what is left of a unit's
    gradient is its query's local path."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = False

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if not self.cut and getattr(func, "__name__", "") in ("matmul", "__matmul__"):
            self.cut = True
            return out.detach()
        return out


class LiteAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from timm.models.efficientvit_mit import LiteMLA

        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.attn = LiteMLA(16, 16, dim=8, scales=(5,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.stem(x))


def test_lite_mla_local_query_path_and_global_sums_every_unit() -> None:
    """Every unit reads the whole input (the token sums), and with the sums cut exactly its query's local
    path: the stem's 3 plus the multi-scale 5×5 aggregation, 7 pixels, clipped at the border."""
    size = (3, 16, 14)
    model = LiteAttention().eval()
    layer = analyze(model, size)["attn"]
    assert layer.status == "ok" and layer.global_context and layer.rf == (7, 7)
    probe = positive_copy(model)
    x = torch.empty((1, *size), dtype=torch.float64).uniform_(0.5, 1.0).requires_grad_()
    wrong = []
    for cut in (False, True):
        for unit in every_unit(layer.grid):
            x.grad = None
            with _CutTokenSums() if cut else contextlib.nullcontext():
                y = probe(x)
            y[(0, slice(None), *unit)].sum().backward()
            read = (x.grad[0].abs().sum(0) > 0).nonzero()
            got = tuple((int(read[:, a].min()), int(read[:, a].max())) for a in range(2))
            want = tuple((max(lo, 0), min(hi, n - 1)) for (lo, hi), n in zip(layer.interval(unit), size[1:])) \
                if cut else ((0, size[1] - 1), (0, size[2] - 1))
            if got != want:
                wrong.append((cut, unit, got, want))
    assert not wrong, wrong[:10]
