"""Tagging policies on real architectures.

Every expected set below is derived by hand from the architecture's definition
(torchvision source / the RFF paper), not copied from our output: the rule is
"the first weight layer on the main (longest) path at each new, coarser
resolution; the stem that reads the image is skipped".
"""

from __future__ import annotations

import pytest

from rffsurgery import analyze
from rffsurgery.plan import PlanError, build_freeze_plan
from rffsurgery.tags import TagError, main_path, tag


@pytest.fixture(scope="module")
def resnet50():
    return analyze("resnet50")


@pytest.fixture(scope="module")
def base_cnn():
    return analyze("rff-base-cnn")


def names(tags):
    return [t.name for t in tags]


def test_base_cnn_tags_are_the_convs_after_each_maxpool(base_cnn):
    # Table 3: layer 6 and 12 are the max-pools; layers 7 and 13 (features.6, features.12) the convs after them.
    assert names(tag(base_cnn)) == ["features.6", "features.12"]


def test_resnet50_tags_are_the_papers_four_layers(resnet50):
    # v1.5 ResNet: first conv after the stem pool, and the stride-2 3x3 conv opening stages 3, 4, 5.
    assert names(tag(resnet50)) == ["layer1.0.conv1", "layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2"]


def test_resnet50_main_path_runs_through_residual_branches(resnet50):
    path = set(main_path(resnet50))
    assert {"layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"} <= path
    assert not any("downsample" in n for n in path)


def test_options_add_stem_and_projection_shortcuts(resnet50):
    with_stem = names(tag(resnet50, include_stem=True))
    assert with_stem[0] == "conv1" and with_stem[1:] == names(tag(resnet50))
    with_shortcuts = names(tag(resnet50, include_shortcuts=True))
    assert set(with_shortcuts) - set(names(tag(resnet50))) == {f"layer{i}.0.downsample.0" for i in range(1, 5)}


@pytest.mark.parametrize(
    "model, expected",
    [
        # VGG16 cfg D: pools at features.4, 9, 16, 23, 30; the conv after each of the first four
        # (the last pool feeds the classifier, whose output is global).
        ("vgg16", ["features.5", "features.10", "features.17", "features.24"]),
        # DenseNet121: stem conv0 (stride 2) skipped; pool0 and each transition's avg-pool make a new
        # resolution; the first weight layer after each is the first dense layer's 1x1 conv (the
        # transition's own conv still works at the old resolution).
        ("densenet121", [f"features.denseblock{i}.denselayer1.conv1" for i in range(1, 5)]),
        # MobileNetV2: stem features.0 skipped; the stride-2 blocks are features.2, 4, 7, 14 and in each
        # the depthwise 3x3 (conv.1.0) produces the new resolution (the 1x1 expand before it does not).
        ("mobilenet_v2", [f"features.{i}.conv.1.0" for i in (2, 4, 7, 14)]),
        # ConvNeXt-T: the 4x4/4 stem (features.0) reads the image; each downsampling layer is
        # LayerNorm2d + Conv2d 2x2/2 (features.2.1, 4.1, 6.1).
        ("convnext_tiny", ["features.2.1", "features.4.1", "features.6.1"]),
        # Inception-v3: stem Conv2d_1a skipped; after maxpool1 the first conv is Conv2d_3b_1x1; after
        # maxpool2 the main (deepest) branch of Mixed_5b is branch3x3dbl (3 convs); the reduction blocks
        # produce the new resolution in their deepest branch: Mixed_6a.branch3x3dbl_3 (3 convs vs 1)
        # and Mixed_7a.branch7x7x3_4 (4 convs vs 2).
        ("inception_v3", ["Conv2d_3b_1x1.conv", "Mixed_5b.branch3x3dbl_1.conv", "Mixed_6a.branch3x3dbl_3.conv",
                          "Mixed_7a.branch7x7x3_4.conv"]),
        # EfficientNet-B0: stride-2 MBConv stages open at features.2, 3, 4, 6 (stage 5 is stride 1);
        # their depthwise conv is block.1.0.
        ("efficientnet_b0", [f"features.{i}.0.block.1.0" for i in (2, 3, 4, 6)]),
    ],
)
def test_paper_policy_on_other_families(model, expected):
    assert names(tag(analyze(model))) == expected


def test_vit_has_no_rf_expanding_layer_and_refuses_an_empty_plan():
    # After the 16x16/16 patch embedding (the stem) everything is global attention: nothing to tag.
    plan = analyze("timm:vit_tiny_patch16_224")
    assert tag(plan) == []
    with pytest.raises(PlanError, match="empty freeze set"):
        build_freeze_plan(plan)


def test_growth_policy_ranks_by_rf_enlargement(base_cnn):
    # Distill's recurrence by hand for the base CNN (3x3 convs, 2x2 pools):
    # conv0 1->3, conv3 3->5, pool 5->6 (S=2), conv6 6->10, conv9 10->14, pool 14->16 (S=4),
    # conv12 16->24, conv15 24->32.
    assert names(tag(base_cnn, "growth", top_k=2)) == ["features.12", "features.15"]
    assert names(tag(base_cnn, "growth", threshold=4)) == ["features.6", "features.9", "features.12", "features.15"]
    # ratios: conv0 3.0, conv3 5/3, conv6 10/6, conv9 1.4, conv12 1.5, conv15 4/3
    assert names(tag(base_cnn, "growth", metric="ratio", top_k=1)) == ["features.0"]


def test_names_policy_globs_and_module_paths(resnet50):
    assert names(tag(resnet50, "names", patterns=["layer*.0.conv2"])) == [f"layer{i}.0.conv2" for i in range(1, 5)]
    assert names(tag(resnet50, "names", patterns=["fc"])) == ["fc"]
    with pytest.raises(TagError, match="matches no node"):
        tag(resnet50, "names", patterns=["layer9.*"])
    with pytest.raises(TagError, match="at least one"):
        tag(resnet50, "names")


def test_bad_policy_and_options(resnet50):
    with pytest.raises(TagError, match="unknown policy"):
        tag(resnet50, "magic")
    with pytest.raises(TagError, match="bad options"):
        tag(resnet50, "paper", top_k=3)
    with pytest.raises(TagError, match="metric"):
        tag(resnet50, "growth", metric="area")
