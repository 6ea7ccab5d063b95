"""Head detection, layer selection, initialisation from old weights, recipes and the rewrite CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rffsurgery.cli import main
from rffsurgery.models import RFFBaseCNN
from rffsurgery.surgery import (ChannelConv3d, GroupedLinear, RewriteError, head_layers, load, rebuild, rewrite,
                                rewrite_conv3d, rewrite_head, save)
from rffsurgery.models.zoo import build


# -- which FC layers ---------------------------------------------------------------------
@pytest.mark.parametrize("name, classifier, hidden", [
    ("resnet50", "fc", []),
    ("vgg16", "classifier.6", ["classifier.0", "classifier.3"]),
    ("mobilenet_v3_small", "classifier.3", ["classifier.0"]),
    ("rff-base-cnn", "classifier.3", ["classifier.1"]),
    ("timm:convnext_tiny", "head.fc", []),
    ("timm:resnet18", "fc", []),
])
def test_head_detection(name, classifier, hidden):
    assert head_layers(build(name, "meta")) == (classifier, hidden)


def test_hidden_fcs_are_replaced_at_their_width():
    done = rewrite_head(build("vgg16", "meta"), 16)
    assert [c.path for c in done.changes] == ["classifier.0", "classifier.3"]
    first = done.model.classifier[0]
    assert isinstance(first.grouped, GroupedLinear) and first.meta.n_out == 16
    assert sum(p.numel() for p in first.parameters()) == 25088 * 256 + 16 * 256 + 16 * 16
    assert done.model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)
    assert isinstance(done.model.classifier[6], nn.Linear)


def test_a_lone_classifier_gets_a_bottleneck():
    model = build("resnet50", "meta")
    done = rewrite_head(model, 16)
    assert done.model.fc.out.in_features == 2048 // 4 and done.model.fc.grouped.out_per_group == 32
    assert isinstance(model.fc, nn.Linear)  # the input model is left alone
    assert rewrite_head(model, 16, hidden=256).model.fc.out.in_features == 256
    assert rewrite_head(model, 16, meta_out=8).model.fc.meta.n_out == 8


def test_layers_chosen_by_glob():
    done = rewrite_head(RFFBaseCNN(), 2, layers=["classifier.[3]"])
    assert [c.path for c in done.changes] == ["classifier.3"]
    assert done.model.classifier[3].out.out_features == 8  # the classifier still gives 8 classes


@pytest.mark.parametrize("kwargs, message", [
    (dict(groups=7), r"7 groups do not divide its 4096 input features \(divisors: 1, 2, 4, 8,"),
    (dict(groups=4, meta_out=3), "3 Meta output groups do not divide the width 64"),
    (dict(groups=4, layers=["classifer.*"]), "'classifer.*' matches no Linear layer; .*classifier.1, classifier.3"),
    (dict(groups=4, hidden=32), "hidden FCs"),
    (dict(groups=4, init="copy", meta_out=2), "identity Meta"),
])
def test_head_errors_say_what_fits(kwargs, message):
    with pytest.raises(RewriteError, match=message):
        rewrite_head(RFFBaseCNN(), **kwargs)


def test_a_model_without_a_linear_head_is_refused():
    convs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with pytest.raises(RewriteError, match="no Linear classifier: the output is computed by '2'"):
        rewrite_head(convs, 2)


# -- initialisation from the old weights ------------------------------------------------------
def test_copied_hidden_fc_is_exact_when_the_fc_is_block_diagonal():
    torch.manual_seed(0)
    model = RFFBaseCNN().eval()
    with torch.no_grad():
        mask = torch.block_diag(*[torch.ones(16, 1024)] * 4)
        model.classifier[1].weight.mul_(mask)
    done = rewrite_head(model, 4, init="copy")
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(done.model(x), model(x), rtol=1e-5, atol=1e-5)
    assert float(done.changes[0].note.split("error ")[1].split()[0]) < 1e-5


@pytest.mark.parametrize("hidden", [4, 8])
def test_copied_bottleneck_is_the_per_group_truncated_svd(hidden):
    """Ground truth from numpy: each group's block of W truncated to rank hidden/G (exact once ≥ min(C, K/G))."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    done = rewrite_head(model, 2, hidden=hidden, init="copy")
    eye = torch.eye(8)
    with torch.no_grad():
        effective = (done.model[1](eye) - done.model[1](torch.zeros(1, 8))).T.numpy()  # (C, K)
    w = model[1].weight.detach().numpy()
    rank = hidden // 2
    expected = np.zeros_like(w)
    for g in range(2):
        u, s, vt = np.linalg.svd(w[:, 4 * g:4 * g + 4], full_matrices=False)
        expected[:, 4 * g:4 * g + 4] = (u[:, :rank] * s[:rank]) @ vt[:rank]
    np.testing.assert_allclose(effective, expected, atol=1e-5)
    x = torch.randn(5, 8)
    if rank >= 3:
        torch.testing.assert_close(done.model(x), model(x), rtol=1e-5, atol=1e-5)


# -- Conv2d → Conv3d selection -------------------------------------------------------------------
class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.wide = nn.Conv2d(16, 96, 3)

    def forward(self, x):
        return self.wide(self.pw(self.dw(self.stem(x))))


def test_ineligible_convs_are_skipped_with_the_reason():
    done = rewrite_conv3d(Mixed(), 4)
    assert [c.path for c in done.changes] == ["pw"]
    reasons = {s.path: s.reason for s in done.skipped}
    assert reasons["stem"].startswith("stem")
    assert "groups=8" in reasons["dw"]
    assert reasons["wide"].startswith("D/s = 24 exceeds C = 16") and reasons["wide"].endswith("use at least 6 filters")


def test_conv_globs_and_the_stem():
    done = rewrite_conv3d(Mixed(), 8, layers=["st*", "wide"])
    assert [c.path for c in done.changes] == ["stem", "wide"]
    assert done.model.stem.depth == 3 - 8 // 8 + 1 and done.model.wide.depth == 16 - 96 // 8 + 1
    with pytest.raises(RewriteError, match="'nope' matches no Conv2d; the model calls these: stem, dw, pw, wide"):
        rewrite_conv3d(Mixed(), 8, layers=["nope"])
    with pytest.raises(RewriteError, match="no eligible Conv2d for 5 filters"):
        rewrite_conv3d(Mixed(), 5)


def test_conv_subclasses_with_their_own_forward_are_skipped():
    timm = pytest.importorskip("timm")
    same = timm.layers.Conv2dSame(8, 8, 3, stride=2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), same, nn.Conv2d(8, 8, 3))
    done = rewrite_conv3d(model, 4)
    assert {s.path: s.reason for s in done.skipped}["1"] == "Conv2dSame overrides Conv2d's forward"


def test_full_depth_rewrite_leaves_the_model_function_unchanged():
    torch.manual_seed(0)
    model = RFFBaseCNN().eval()
    done = rewrite_conv3d(model, 64)  # features.3 (D = 32) is skipped; every 64-wide conv becomes u = C
    assert [s.path for s in done.skipped] == ["features.0", "features.3"]
    assert all(isinstance(done.model.features[i], ChannelConv3d) for i in (6, 9, 12, 15))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(done.model(x), model(x), rtol=1e-5, atol=1e-5)


# -- recipes ----------------------------------------------------------------------------------
def test_recipe_round_trip(tmp_path):
    torch.manual_seed(0)
    done = rewrite("rff-base-cnn", meta_groups=4, conv3d_filters=8)
    save(done, tmp_path)
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert recipe["model"] == "rff-base-cnn" and [s["rewrite"] for s in recipe["steps"]] == ["meta_head", "conv3d"]
    state = torch.load(tmp_path / "state_dict.pt", weights_only=True)
    assert state.keys() == done.after.state_dict().keys()
    loaded = load(tmp_path).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), done.after.eval()(x))


def test_recipe_of_a_python_module_needs_its_base(tmp_path):
    done = rewrite(RFFBaseCNN(), conv3d_filters=8)
    save(done, tmp_path)
    with pytest.raises(RewriteError, match="pass that model as base="):
        load(tmp_path)
    assert isinstance(load(tmp_path, base=RFFBaseCNN()).features[3], ChannelConv3d)
    with pytest.raises(RewriteError, match="the base model differs"):
        load(tmp_path, base=RFFBaseCNN(num_classes=10))
    with pytest.raises(RewriteError, match="schema"):
        rebuild({"schema": "something/else", "steps": []})


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_rewrite(tmp_path):
    result = CliRunner().invoke(main, ["rewrite", "rff-base-cnn", "--meta-groups", "4", "--conv3d-filters", "8",
                                       "--out", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(l.startswith("classifier.1  262,208 → 65,616") for l in lines)  # 4096·16 + 4·16 + 4·4
    assert any(l.startswith("features.6    18,496 → 1,808") for l in lines)  # (9·25 + 1)·8
    assert "skipped features.0: stem" in result.output
    assert "ok   analyze: complete; last local node features.16: RF 32 → 32" in result.output
    assert "onnxruntime matches PyTorch" in result.output
    assert (tmp_path / "recipe.json").is_file() and (tmp_path / "state_dict.pt").is_file()


def test_cli_rewrite_errors():
    result = CliRunner().invoke(main, ["rewrite", "rff-base-cnn", "--meta-groups", "3"])
    assert result.exit_code == 1 and "3 groups do not divide its 4096 input features" in result.output
    result = CliRunner().invoke(main, ["rewrite", "rff-base-cnn"])
    assert result.exit_code == 1 and "nothing to rewrite" in result.output
