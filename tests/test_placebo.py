"""The layer-matched placebo's choice: as many layers, closest parameter count, away from the tagged ones.

Expected layers and counts come from the models' layer shapes worked out by hand, and the subset
search is checked against brute force.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from torch import nn

from rffsurgery import analyze
from rffsurgery.models.zoo import resolve
from rffsurgery.plan import PlanError, build_freeze_plan
from rffsurgery.plan.placebo import closest_subset, placebo_candidates, placebo_plan


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k


@pytest.fixture(scope="module")
def base_cnn():
    analysis = analyze(resolve("rff-base-cnn").build("meta"), (3, 32, 32))
    return analysis, build_freeze_plan(analysis)


def test_base_cnn_placebo_by_hand(base_cnn):
    analysis, plan = base_cnn
    placebo = placebo_plan(analysis, plan)
    # candidates: the stride-1 convs and the second conv of each later stage (features.6/12 are tagged,
    # classifier.1/3 have global outputs)
    assert placebo.candidates == ("features.0", "features.3", "features.9", "features.15")
    tagged = _conv(32, 64) + 64 + _conv(64, 64) + 64
    assert placebo.tagged_layers == ("features.6", "features.12") and placebo.tagged_parameters == tagged
    # pairs: 0+3 10,144; 0+9 / 0+15 37,824; 3+9 / 3+15 46,176; 9+15 73,856 → |log| smallest for 46,176,
    # and of the two equal sets the first in graph order
    assert placebo.layers == ("features.3", "features.9")
    assert placebo.parameters == _conv(32, 32) + 32 + _conv(64, 64) + 64 == 46_176
    assert placebo.ratio == pytest.approx(46_176 / 55_424)
    assert set(placebo.plan.parameter_names) == {"features.3.weight", "features.3.bias", "features.9.weight",
                                                 "features.9.bias"}
    assert not set(placebo.plan.parameter_names) & set(plan.parameter_names)
    assert placebo.plan.schedule == plan.schedule and placebo.plan.bn_mode == plan.bn_mode
    assert placebo_plan(analysis, plan) == placebo  # deterministic


def test_resnet18_32_tags_the_four_stage_entries_and_its_placebo_avoids_them():
    analysis = analyze(resolve("resnet18-32").build("meta"), (3, 32, 32))
    plan = build_freeze_plan(analysis)
    assert [t["node"] for t in plan.tagged] == ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1",
                                                 "layer4.0.conv1"]
    assert [t["reason"] for t in plan.tagged][0] == "main path: first consumes stride 2"  # after the max-pool
    placebo = placebo_plan(analysis, plan)
    # not tagged, not the projection shortcuts (new resolution off the main path), not fc (global)
    assert not any("downsample" in c or c == "fc" for c in placebo.candidates)
    assert "conv1" in placebo.candidates  # the 3×3 stride-1 stem changes no resolution
    assert len(placebo.layers) == 4 and not set(placebo.layers) & {t["node"] for t in plan.tagged}
    assert placebo.tagged_parameters == _conv(64, 64) + _conv(64, 128) + _conv(128, 256) + _conv(256, 512)
    assert placebo.layers == ("layer2.0.conv2", "layer2.1.conv1", "layer3.0.conv2", "layer3.1.conv1")
    assert placebo.parameters == 2 * _conv(128, 128) + 2 * _conv(256, 256)
    # the best of all 4-sets of candidates, by brute force over their parameter counts
    sizes = {name: sum(p.numel() for p in analysis.model.get_submodule(name).parameters())
             for name in placebo.candidates}
    best = min(abs(math.log(sum(sizes[n] for n in combo) / placebo.tagged_parameters))
               for combo in itertools.combinations(placebo.candidates, 4))
    assert abs(math.log(placebo.ratio)) == pytest.approx(best)


def test_bn_mode_carries_over(base_cnn):
    analysis, _ = base_cnn
    plan = build_freeze_plan(analysis, bn="freeze-affine")
    placebo = placebo_plan(analysis, plan)
    # only convs 0, 6 and 12 are followed by a BatchNorm: the placebo's convs 3 and 9 have none to freeze
    assert placebo.plan.bn_mode == "freeze-affine" and placebo.plan.bn_modules == ()
    assert "features.7.weight" in plan.parameter_names  # the tagged conv's BatchNorm is frozen with it


def test_too_few_candidates_is_one_line():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                          nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 32, 32))
    analysis = analyze(model, (3, 32, 32))
    plan = build_freeze_plan(analysis)
    assert [t["node"] for t in plan.tagged] == ["2", "4"]
    assert placebo_candidates(analysis, plan.frozen_nodes) == ["0"]
    with pytest.raises(PlanError, match=r"freezes 2 layer\(s\) but only 1 weight layer\(s\) are away .* --control aa"):
        placebo_plan(analysis, plan)


def test_closest_subset_matches_brute_force_and_the_local_search_is_close():
    rng = random.Random(0)
    for _ in range(50):
        counts = [rng.randint(1, 1000) for _ in range(rng.randint(2, 9))]
        k = rng.randint(1, len(counts))
        target = rng.randint(1, 4000)

        def cost(combo):
            return abs(math.log(sum(counts[i] for i in combo) / target))

        exact = closest_subset(counts, k, target)
        assert len(exact) == k and cost(exact) == pytest.approx(min(map(cost, itertools.combinations(
            range(len(counts)), k))))
        searched = closest_subset(counts, k, target, limit=0)  # force the local search
        assert len(set(searched)) == k and cost(searched) <= cost(exact) + 0.1
    assert closest_subset([5, 5, 5], 1, 5) == (0,)  # ties: first in order
    with pytest.raises(ValueError):
        closest_subset([1, 2], 3, 5)
