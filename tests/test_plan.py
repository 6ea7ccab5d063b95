"""Freeze plans: schema round trip, validation, and what freezing does to a real optimizer step."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import FreezePlan, FreezeSchedule, PlanError, Schedule, freeze


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return RFFBaseCNN()


@pytest.fixture()
def fplan(model):
    return analyze(model).freeze_plan(schedule=Schedule(epochs=(5,)))


def test_plan_content(fplan):
    assert fplan.parameter_names == ("features.6.weight", "features.6.bias", "features.12.weight", "features.12.bias")
    assert [t["node"] for t in fplan.tagged] == ["features.6", "features.12"]
    assert fplan.fingerprint.startswith("sha256:") and fplan.input_size == (3, 32, 32)


def test_round_trip(tmp_path, fplan):
    path = fplan.export(tmp_path / "plan.json")
    loaded = FreezePlan.load(path)
    assert loaded.to_dict() == fplan.to_dict()
    assert json.loads(path.read_text())["schema_version"] == 1


def _write(tmp_path, data):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema_version=2), "upgrade rffsurgery"),
        (lambda d: d.update(schema="something.else"), "not a freeze plan"),
        (lambda d: d["freeze"].update(parameters=[]), "empty freeze set"),
        (lambda d: d["freeze"].update(parameters="features.6.weight"), "must be a list"),
        (lambda d: d["freeze"].update(parameters=[1, 2]), "list of strings"),
        (lambda d: d.pop("model"), "missing field 'model'"),
        (lambda d: d.update(schedule={"epochs": [0]}), "integers ≥ 1"),
        (lambda d: d.update(schedule={"every": 2, "epochs": [3]}), "not both"),
        (lambda d: d["freeze"]["batchnorm"].update(mode="melt"), "BatchNorm mode"),
        (lambda d: d.update(input_size=[3, -1]), "positive integers"),
    ],
)
def test_malformed_plans_are_refused(tmp_path, fplan, edit, message):
    data = fplan.to_dict()
    edit(data)
    with pytest.raises(PlanError, match=message):
        FreezePlan.load(_write(tmp_path, data))


def test_corrupt_json_is_refused(tmp_path, fplan):
    with pytest.raises(PlanError, match="not valid JSON"):
        FreezePlan.load(_write(tmp_path, fplan.to_json()[:-40]))
    with pytest.raises(PlanError, match="cannot read"):
        FreezePlan.load(tmp_path / "missing.json")


def test_fingerprint_mismatch_and_unknown_parameter(model, fplan):
    fplan.check(model)  # the model it was made from passes
    with pytest.raises(PlanError, match="does not match the plan"):
        fplan.check(RFFBaseCNN(num_classes=10))  # same parameter names, different head shape
    data = fplan.to_dict()
    data["freeze"]["parameters"].append("features.99.weight")
    with pytest.raises(PlanError, match="features.99.weight"):
        FreezePlan.from_dict(data).check(model)


def test_schedules():
    assert [e for e in range(1, 12) if Schedule(epochs=(5,)).is_frozen(e)] == [5]
    assert [e for e in range(1, 12) if Schedule(every=2, start=5).is_frozen(e)] == [5, 7, 9, 11]
    assert [e for e in range(1, 12) if Schedule(every=3, start=2, stop=8).is_frozen(e)] == [2, 5, 8]


def _step(model, optimizer, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 8, (8,), generator=g)
    optimizer.zero_grad(set_to_none=False)  # the harder case: grads left as zero tensors, not None
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
    ],
    ids=["sgd-momentum-wd", "adamw"],
)
def test_frozen_parameters_are_bit_identical_and_others_move(model, fplan, make_optimizer):
    model.train()
    optimizer = make_optimizer(model.parameters())
    _step(model, optimizer, seed=1)  # momentum / Adam moments now exist for every parameter
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with freeze(model, fplan) as frozen:
        _step(model, optimizer, seed=2)
    assert set(frozen) == set(fplan.parameter_names)
    for name, param in model.named_parameters():
        if name in fplan.parameter_names:
            assert torch.equal(param, before[name]), name
        else:
            assert not torch.equal(param, before[name]), name
    assert all(p.requires_grad for p in model.parameters())  # restored on exit
    _step(model, optimizer, seed=3)
    assert not torch.equal(model.get_parameter("features.6.weight"), before["features.6.weight"])


def test_batchnorm_modes(model):
    analysis = analyze(model)
    affine = analysis.freeze_plan(bn="freeze-affine")
    full = analysis.freeze_plan(bn="freeze")
    assert affine.bn_modules == full.bn_modules == ("features.7", "features.13")
    assert "features.7.weight" in full.parameter_names and "features.7.bias" in full.parameter_names
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    stats = model.features[7].running_mean.clone()
    with freeze(model, affine):
        _step(model, optimizer, seed=4)
    assert not torch.equal(model.features[7].running_mean, stats)  # statistics still track the data
    stats = model.features[7].running_mean.clone()
    with freeze(model, full):
        _step(model, optimizer, seed=5)
    assert torch.equal(model.features[7].running_mean, stats)


def test_freeze_schedule_only_freezes_scheduled_epochs(model, fplan):
    sched = FreezeSchedule(model, fplan)
    seen = {}
    for epoch in range(1, 7):
        with sched.epoch(epoch):
            seen[epoch] = model.get_parameter("features.6.weight").requires_grad
    assert seen == {1: True, 2: True, 3: True, 4: True, 5: False, 6: True}
    with pytest.raises(PlanError):
        FreezeSchedule(RFFBaseCNN(num_classes=10), fplan)


def test_cli_export_show_and_refuse(tmp_path):
    runner = CliRunner()
    out = tmp_path / "plan.json"
    result = runner.invoke(main, ["analyze", "resnet50", "--export-plan", str(out), "--every", "2", "--start", "5"])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(main, ["plan", "show", str(out)])
    assert shown.exit_code == 0
    for name in ("layer1.0.conv1.weight", "layer4.0.conv2.weight", "every 2 epoch(s) from epoch 5"):
        assert name in shown.output
    assert runner.invoke(main, ["plan", "check", str(out), "resnet50"]).exit_code == 0
    mismatch = runner.invoke(main, ["plan", "check", str(out), "resnet34"])  # same names, other graph
    assert mismatch.exit_code == 1 and "does not match the plan" in mismatch.output
    renamed = runner.invoke(main, ["plan", "check", str(out), "vgg11"])
    assert renamed.exit_code == 1 and "no parameter" in renamed.output
    out.write_text("{not json")
    bad = runner.invoke(main, ["plan", "show", str(out)])
    assert bad.exit_code == 1 and "not valid JSON" in bad.output


def test_cli_plot_writes_a_png(tmp_path):
    out = tmp_path / "rf.png"
    result = CliRunner().invoke(main, ["analyze", "rff-base-cnn", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
