"""Models whose Python branches on their input's shape (timm's Gemma-4 encoder) are traced for that shape.

Ground truth is the gradient (tests/gradient_rf.py): the branch taken at each size
must be the one analysed, with its exact receptive field at every unit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rffsurgery import analyze, build_freeze_plan, freeze
from rffsurgery.plan import Schedule
from rffsurgery.trace import TraceError, trace

from gradient_rf import GradientProbe, assert_exact, compare

pytestmark = pytest.mark.usefixtures("one_thread")


class ShapeBranchy(nn.Module):
    """Rank, size and parity branches, as in Gemma-4's patch embedding and pooler."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.wide = nn.Conv2d(4, 4, 5, padding=2)
        self.deep = nn.Conv2d(4, 4, 3, dilation=2, padding=2)
        self.head = nn.Conv2d(4, 4, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(0)
        _, _, h, w = x.shape
        if h % 2:
            x = F.pad(x, (0, w % 2, 0, 1))  # pad to even, at the bottom/right only
        x = self.stem(x)
        x = self.wide(x) if x.size(-1) > 6 else self.deep(x)
        return self.head(x)


def _every(shape):
    return [(i, j) for i in range(shape[0]) for j in range(shape[1])]


@pytest.mark.parametrize(("side", "branch", "rf"), [(15, "wide", 11), (12, "deep", 11)])
def test_shape_branches_follow_the_input_and_match_the_gradient(side: int, branch: str, rf: int) -> None:
    model = ShapeBranchy()
    with pytest.raises(TraceError):  # symbolically, `h % 2` has no truth value
        trace(model)
    plan = analyze(model, (3, side, side))
    assert plan.shape_specialised and plan.complete
    assert branch in plan and ({"wide", "deep"} - {branch}).isdisjoint(plan.layers)
    assert plan[branch].rf == (rf, rf)  # stem RF 3 at stride 2, then a 5-tap (or dilated 3-tap) conv
    assert_exact(compare(plan, GradientProbe(model, (3, side, side)), ["stem", branch], units=_every))


def test_a_model_without_shape_branches_is_not_specialised() -> None:
    plan = analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), 16)
    assert not plan.shape_specialised
    assert "shape_specialised" in plan.to_dict() and plan.to_dict()["shape_specialised"] is False


def test_branches_on_values_still_name_the_construct() -> None:
    class ValueBranchy(ShapeBranchy):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = super().forward(x)
            return x if x.mean() > 0 else -x

    with pytest.raises(TraceError, match=r"data-dependent control flow.*x\.mean\(\) > 0"):
        analyze(ValueBranchy(), 15, capture="fx")


def test_a_freeze_plan_for_a_shape_specialised_model_applies_to_it() -> None:
    model = ShapeBranchy()
    plan = build_freeze_plan(analyze(model, (3, 15, 15)), schedule=Schedule(epochs=(2,)))
    with freeze(model, plan) as frozen:
        assert frozen and all(not model.get_parameter(name).requires_grad for name in frozen)


def test_gemma4_vit_is_analysed_at_its_size() -> None:
    plan = analyze("timm:gemma4_vit_167m_enc", (3, 96, 96))  # 6x6 patches of 16, pooled in 3x3 cells
    assert plan.shape_specialised and plan.complete
    assert plan["patch_embed.input_proj"].shape == (36, 768)


class IntPositions(nn.Module):
    """Integer positions turned float, and a comparison turned mask: dtypes change along the way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        pos = torch.arange(y.size(-1), device=x.device)  # int64
        y = y.masked_fill(pos < 2, 0.0)  # a bool mask, from an int comparison
        return y @ pos.float()[:, None].expand(-1, 3)  # a float matmul, from an int tensor


def test_dtype_changing_ops_are_run_for_their_output_on_the_meta_device() -> None:
    plan = analyze(IntPositions().to("meta"), 10)  # meta parameters: no real-tensor fallback to hide behind
    assert not plan.shape_specialised
    out = plan.output()
    assert out.shape == (4, 8, 3)
    assert out.axes[0].size == 3 and out.axes[1] is None  # rows exact; the matmul mixes every column


class ShapeBranchyClassifier(ShapeBranchy):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(super().forward(x).mean((2, 3)))


def test_rewrites_trace_a_shape_branching_model_at_the_rewrite_input_size() -> None:
    from rffsurgery.surgery import rewrite

    done = rewrite(ShapeBranchyClassifier(), meta_groups=2, input_size=(3, 15, 15))
    assert [c.path for c in done.changes] == ["fc"] and done.recipe.input_size == (3, 15, 15)
    assert done.after(torch.rand(1, 3, 15, 15)).shape == (1, 8)
