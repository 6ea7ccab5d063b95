"""Rewritten resnet50 and the paper's base CNN train, keep their receptive fields, and export to ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rffsurgery.export import export_onnx
from rffsurgery.surgery import ChannelConv3d, GroupedLinear, Meta, rewrite
from rffsurgery.surgery.check import check


@pytest.fixture(scope="module", params=[
    ("resnet50", dict(meta_groups=16, input_size=64)),
    ("rff-base-cnn", dict(meta_groups=4, conv3d_filters=8)),
], ids=["resnet50-meta16", "base-cnn-meta4-conv3d8"])
def rewritten(request):
    torch.manual_seed(0)
    name, options = request.param
    return rewrite(name, **options)


def new_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{path}.{n}": p for path, m in model.named_modules() if isinstance(m, (GroupedLinear, Meta, ChannelConv3d))
            for n, p in m.named_parameters()}


def test_trains_on_generated_data(rewritten):
    """A few Adam steps on one fixed generated batch lower its loss and move every new parameter."""
    model = rewritten.after.train()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, *rewritten.input_size, generator=generator)
    classes = model(x).shape[1]
    y = torch.randint(0, classes, (2,), generator=generator)
    start = {k: v.detach().clone() for k, v in new_parameters(model).items()}
    assert start
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    moved = {k for k, v in new_parameters(model).items() if not torch.equal(v, start[k])}
    assert moved == set(start)


def test_exports_to_onnx_and_matches_onnxruntime(rewritten, tmp_path):
    result = export_onnx(rewritten.after, rewritten.input_size, tmp_path / "model.onnx")
    assert result.ok, str(result)
    assert result.max_abs_output > 0


def test_checks_pass_and_the_receptive_field_is_kept(rewritten):
    checks = {c.name: c for c in check(rewritten)}
    assert all(c.ok for c in checks.values()), checks
    if rewritten.recipe.model == "rff-base-cnn":
        # by hand: 3×3 convs and 2×2 pools, 3 → 5 → 10 → 12 → 14 → 28 → 30 → 32
        assert "last local node features.16: RF 32 → 32" in checks["analyze"].detail
