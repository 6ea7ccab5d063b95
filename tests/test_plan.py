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
from rffsurgery.plan import FreezePlan, FreezeSchedule, PlanError, Schedule, build_freeze_plan, freeze


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return RFFBaseCNN()


@pytest.fixture()
def fplan(model):
    return build_freeze_plan(analyze(model), schedule=Schedule(epochs=(5,)))


def test_plan_content(fplan):
    assert fplan.parameter_names == ("features.6.weight", "features.6.bias", "features.12.weight", "features.12.bias")
    assert [t["node"] for t in fplan.tagged] == ["features.6", "features.12"]
    assert fplan.fingerprint.startswith("sha256:") and fplan.input_size == (3, 32, 32)


def test_round_trip(tmp_path, fplan):
    path = fplan.export(tmp_path / "plan.json")
    loaded = FreezePlan.load(path)
    assert loaded.to_dict() == fplan.to_dict()
    assert json.loads(path.read_text())["schema_version"] == 2


def _write(tmp_path, data):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema_version=3), "upgrade rffsurgery"),
        (lambda d: d.update(schema_version=1), "re-create it: rffsurgery analyze RFFBaseCNN --export-plan"),
        (lambda d: d["model"]["graph"].pop(), "does not match its fingerprint"),
        (lambda d: d.update(schema="something.else"), "not a freeze plan"),
        (lambda d: d["freeze"].update(parameters=[]), "empty freeze set"),
        (lambda d: d["freeze"].update(parameters="features.6.weight"), "must be a list"),
        (lambda d: d["freeze"].update(parameters=[1, 2]), "list of strings"),
        (lambda d: d.pop("model"), "missing field 'model'"),
        (lambda d: d.update(schedule={"epochs": [0]}), "each schedule epoch must be an integer from 1 to"),
        (lambda d: d.update(schedule={"every": 2, "epochs": [3]}), "not both"),
        (lambda d: d["freeze"]["batchnorm"].update(mode="melt"), "BatchNorm mode"),
        (lambda d: d.update(input_size=[3, -1]), "must be positive"),
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


def test_fingerprint_covers_the_frozen_layers_and_their_inputs_only(model, fplan):
    assert fplan.check(model) == ""  # the model it was made from passes, as itself
    assert fplan.check(RFFBaseCNN(num_classes=10)) == ""  # another head: after the frozen layers
    assert fplan.check(RFFBaseCNN(hidden=32)) == ""
    with pytest.raises(PlanError, match="'features.0' differs"):
        fplan.check(RFFBaseCNN(width=16))  # same parameter names, narrower convs before the frozen ones
    strided = RFFBaseCNN()
    strided.features[3].stride = (2, 2)  # same names and shapes: only the geometry feeding features.6 changes
    with pytest.raises(PlanError, match=r"'features.3' differs: .*stride=\(1, 1\).*stride=\(2, 2\)"):
        fplan.check(strided)
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
    affine = build_freeze_plan(analysis, bn="freeze-affine")
    full = build_freeze_plan(analysis, bn="freeze")
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
        FreezeSchedule(RFFBaseCNN(width=16), fplan)


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


# ---------------------------------------------------------------------------
# a plan made by the CLI, applied to the models users actually train
# ---------------------------------------------------------------------------
# torchvision's BasicBlock puts the stride in conv1, so the paper's policy (first weight layer at each
# new resolution on the main path, stem skipped) picks layer1.0.conv1 (first after the max-pool) and
# the stride-2 conv1 opening layers 2-4; these convs have no bias.
RESNET18_FROZEN = ("layer1.0.conv1.weight", "layer2.0.conv1.weight", "layer3.0.conv1.weight", "layer4.0.conv1.weight")


@pytest.fixture(scope="module")
def resnet18_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "p.json"
    result = CliRunner().invoke(main, ["analyze", "resnet18", "--export-plan", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_cli_resnet18_plan_freezes_exactly_its_layers_of_a_10_class_resnet18(resnet18_plan, one_thread):
    import torchvision

    plan = FreezePlan.load(resnet18_plan)
    assert plan.parameter_names == RESNET18_FROZEN
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))

    def step():
        optimizer.zero_grad(set_to_none=False)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # momentum buffers exist for every parameter
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with freeze(model, plan):
        assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(RESNET18_FROZEN)
        step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == (name in RESNET18_FROZEN), name


def test_cli_resnet18_plan_fits_replaced_heads_and_is_refused_on_resnet34(resnet18_plan):
    import torchvision

    from rffsurgery.train.model import build_model

    plan = FreezePlan.load(resnet18_plan)
    replaced = torchvision.models.resnet18()
    replaced.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 3))
    assert plan.check(replaced) == ""
    assert plan.check(build_model("resnet18", 8, dropout=0.2)[0]) == ""  # the trainer's 8-class resnet18
    runner = CliRunner()
    assert runner.invoke(main, ["plan", "check", str(resnet18_plan), "resnet18", "--num-classes", "10"]).exit_code == 0
    refused = runner.invoke(main, ["plan", "check", str(resnet18_plan), "resnet34"])
    # resnet34 has three blocks in layer1 where resnet18 has two: its graph parts at layer1.2.conv1.
    assert refused.exit_code == 1
    assert "the model has 'layer1.2.conv1' where the plan has 'layer2.0.conv1'" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_cli_num_classes(tmp_path, resnet18_plan):
    runner = CliRunner()
    ten = tmp_path / "ten.json"
    assert runner.invoke(main, ["analyze", "resnet18", "--num-classes", "10", "--export-plan", str(ten)]).exit_code == 0
    assert FreezePlan.load(ten).fingerprint == FreezePlan.load(resnet18_plan).fingerprint  # the head is not in it
    table = runner.invoke(main, ["analyze", "resnet18", "--num-classes", "10"])
    assert table.exit_code == 0 and " 10 " in next(line for line in table.output.splitlines() if line.startswith("fc"))
    # A plan that freezes the classifier depends on it: made for 10 classes, refused on 1000.
    head = tmp_path / "head.json"
    result = runner.invoke(main, ["analyze", "resnet18", "--num-classes", "10", "--policy", "names", "--select", "fc",
                                  "--export-plan", str(head)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["plan", "check", str(head), "resnet18", "--num-classes", "10"]).exit_code == 0
    refused = runner.invoke(main, ["plan", "check", str(head), "resnet18"])
    assert refused.exit_code == 1 and "'fc' differs" in refused.output
    for bad in ("0", "-3"):
        bad_run = runner.invoke(main, ["analyze", "resnet18", "--num-classes", bad])
        assert bad_run.exit_code == 2 and f"'--num-classes': {bad} is not in the range 1<=x<=" in bad_run.output
    no_head = runner.invoke(main, ["analyze", "tests/test_plan.py:_headless", "--num-classes", "3"])
    assert no_head.exit_code == 1 and "does not take num_classes" in no_head.output


def _headless() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())


def test_plan_check_names_missing_layers_and_parameters(tmp_path, resnet18_plan):
    data = json.loads(resnet18_plan.read_text())
    data["freeze"]["parameters"].append("layer9.0.conv1.weight")
    _write(tmp_path, data)
    result = CliRunner().invoke(main, ["plan", "check", str(tmp_path / "plan.json"), "resnet18"])
    assert result.exit_code == 1 and "no parameter(s) layer9.0.conv1.weight" in result.output
    data = json.loads(resnet18_plan.read_text())
    data["tagged"].append({"node": "layer4.0.relu_9"})  # a node the graph does not have
    _write(tmp_path, data)
    result = CliRunner().invoke(main, ["plan", "check", str(tmp_path / "plan.json"), "resnet18"])
    assert result.exit_code == 1 and "no node(s) layer4.0.relu_9 that the plan freezes" in result.output
