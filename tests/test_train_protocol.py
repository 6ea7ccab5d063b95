"""The RFF protocol end to end on tiny generated data: freezing, transfer, identical heads, resume, errors."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from click.testing import CliRunner

from rffsurgery.cli import main
from rffsurgery.plan import PlanError
from rffsurgery.train import (GENERATED_SPLITS, Augment, CheckpointError, GeneratedSource, ProtocolConfig, Split,
                              base_finished, run_protocol)
from rffsurgery.train.protocols import rff as protocol
from rffsurgery.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: the cores are shared

SOURCE = GeneratedSource(per_class=20, cue=1.0)
SPLIT = GENERATED_SPLITS["g.1"]
CFG = ProtocolConfig(epochs=2, transfer_epochs=3, batch_size=32, device="cpu")
# The paper freezes layers 7 and 13 of its base CNN: the convs right after each max-pool.
PAPER_FROZEN = {"features.6.weight", "features.6.bias", "features.12.weight", "features.12.bias"}
TIMING = {"normal_epoch_seconds", "rff_epoch_seconds", "epoch_time_ratio", "wall_seconds"}


def _clone(state):
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.fixture(scope="module")
def full(one_thread, tmp_path_factory):
    """One uninterrupted run, recording the model state before and after every training epoch."""
    calls = {}
    real = protocol.train_epoch

    def spy(model, batches, optimizer, runtime, epoch_seed, augment=None, l1=0.0, desc="", **kw):
        before = _clone(model.state_dict())
        stats = real(model, batches, optimizer, runtime, epoch_seed, augment, l1, desc, **kw)
        calls[desc.split(" ", 3)[3]] = (before, _clone(model.state_dict()))  # "branch rff 3" etc.
        return stats

    out = tmp_path_factory.mktemp("full")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "train_epoch", spy)
        stages = _record_stages(mp)
        result = run_protocol(CFG, SOURCE.protocol_data(SPLIT, 0), 0, out / "run", split="g.1")
    return result, calls, {**load_checkpoint(out / "run" / "checkpoint.pt"), **stages}, out / "run"


def _record_stages(mp: pytest.MonkeyPatch) -> dict:
    """What the branch and transfer stages return (their model states): the final checkpoint keeps no models."""
    stages = {}
    for name in ("branch", "transfer"):
        def wrapper(self, *args, _real=getattr(protocol._Run, name), _name=name):
            stages[_name] = _real(self, *args)
            return stages[_name]
        mp.setattr(protocol._Run, name, wrapper)
    return stages


def test_result_and_logs(full):
    result, _, state, workdir = full
    assert result["n"] == 2 and result["branch_epoch"] == 3 and result["onset_detected"] is None
    assert result["delta"] == pytest.approx(result["rff_accuracy"] - result["normal_accuracy"])
    assert 0 <= result["normal_accuracy"] <= 1 and result["transfer_classes"] == list(SPLIT.transfer)
    rows = json.loads((workdir / "log.json").read_text())
    assert [(r["stage"], r["model"], r["epoch"]) for r in rows] == [
        ("base", "shared", 1), ("base", "shared", 2), ("branch", "normal", 3), ("branch", "rff", 3),
        *[("transfer", m, e) for m in ("normal", "rff") for e in (1, 2, 3)]]
    assert all(r["seconds"] > 0 for r in rows)
    header = (workdir / "log.csv").read_text().splitlines()[0]
    assert header == "stage,model,epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_second"
    assert set(json.loads((workdir / "plan.json").read_text())["freeze"]["parameters"]) == PAPER_FROZEN
    assert state["stage"] == "done" and state["result"] == result


def test_rff_epoch_changes_everything_but_the_plan(full):
    result, calls, _, _ = full
    assert set(result["frozen"]) == PAPER_FROZEN
    before, after = calls["branch rff 3"]
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    assert unchanged == PAPER_FROZEN
    normal_before, normal_after = calls["branch normal 3"]
    assert not any(torch.equal(normal_before[k], normal_after[k]) for k in PAPER_FROZEN)


def test_both_branches_start_from_the_end_of_base_training(full):
    _, calls, _, _ = full
    end_of_base = calls["base shared 2"][1]
    for name in ("normal", "rff"):
        start = calls[f"branch {name} 3"][0]
        assert all(torch.equal(start[k], end_of_base[k]) for k in end_of_base)


def test_transfer_trains_only_the_new_head_from_identical_weights(full):
    _, calls, state, _ = full
    head_init = state["transfer"]["head_init"]
    for name in ("normal", "rff"):
        assert all(torch.equal(calls[f"transfer {name} 1"][0][k], head_init[k]) for k in ("weight", "bias"))
        body = state["branch"]["states"][name]
        final = state["transfer"]["states"][name]
        changed = {k for k in final if k not in body or not torch.equal(final[k], body[k])}
        assert changed == {"classifier.3.weight", "classifier.3.bias"}
        assert final["classifier.3.weight"].shape == (2, 64)
        assert not torch.equal(final["classifier.3.weight"], head_init["weight"])


def test_resume_after_the_branch_reproduces_the_uninterrupted_result(full, tmp_path):
    result, _, _, workdir = full
    data = SOURCE.protocol_data(SPLIT, 0)
    assert run_protocol(CFG, data, 0, tmp_path, split="g.1", stop_after="branch") is None
    stopped = load_checkpoint(tmp_path / "checkpoint.pt")
    assert stopped["stage"] == "branch"
    resumed = run_protocol(CFG, data, 0, tmp_path, split="g.1", resume=True)
    assert resumed["wall_seconds"] > stopped["wall_seconds"] > 0  # the cost per run counts both sessions
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    assert strip(resumed) == strip(result)
    rows = lambda p: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}  # noqa: E731
                      for r in json.loads((p / "log.json").read_text())]
    assert rows(tmp_path) == rows(workdir)


def test_existing_foreign_and_corrupt_checkpoints_are_refused(full, tmp_path):
    _, _, _, workdir = full
    data = SOURCE.protocol_data(SPLIT, 0)
    with pytest.raises(CheckpointError, match="already exists.*--resume"):
        run_protocol(CFG, data, 0, workdir, split="g.1")
    with pytest.raises(CheckpointError, match="different run.*lr: 0.001 → 0.01"):
        run_protocol(dataclasses.replace(CFG, lr=0.01), data, 0, workdir,
                     split="g.1", resume=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_protocol(CFG, data, 0, tmp_path, split="g.1", resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x00garbage"


def test_a_plan_for_another_model_is_refused_before_training(tmp_path):
    from rffsurgery import analyze, build_freeze_plan
    from rffsurgery.models import RFFBaseCNN

    build_freeze_plan(analyze(RFFBaseCNN(width=16))).export(tmp_path / "plan.json")  # narrower than the trainer's
    three = Split("three", SPLIT.base[:3], SPLIT.transfer)
    cfg = dataclasses.replace(CFG, plan=str(tmp_path / "plan.json"))
    with pytest.raises(PlanError, match="does not fit rff-base-cnn with 3 base classes"):
        run_protocol(cfg, SOURCE.protocol_data(three, 0), 0, tmp_path / "run", split="three")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_overfitting_onset_criterion():
    cfg = ProtocolConfig(until_overfit=True, patience=2, max_epochs=6)
    assert base_finished(cfg, []) is None
    assert base_finished(cfg, [3.0, 2.0, 1.0, 1.5]) is None  # one bad epoch is not yet an onset
    assert base_finished(cfg, [3.0, 2.0, 1.0, 1.5, 1.2]) == 3
    assert base_finished(cfg, [3.0, 2.0, 1.0, 1.5, 0.9]) is None  # new minimum resets the count
    assert base_finished(cfg, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) == 6  # cap reached while still improving
    assert base_finished(ProtocolConfig(epochs=4), [9.0, 1.0, 2.0]) is None
    assert base_finished(ProtocolConfig(epochs=4), [9.0, 1.0, 2.0, 3.0]) == 4


def test_experiment_2_mode_with_finetuning_and_regularisation(tmp_path):
    cfg = ProtocolConfig(until_overfit=True, max_epochs=3, patience=1, transfer_epochs=1, finetune=True,
                         batch_size=32, dropout=0.2, weight_decay=1e-4, l1=1e-6, device="cpu",
                         augment=Augment(flip=True, rotation=10, zoom=0.1))
    with pytest.MonkeyPatch.context() as mp:
        stages = _record_stages(mp)
        result = run_protocol(cfg, SOURCE.protocol_data(SPLIT, 1), 1, tmp_path, split="g.1")
    base = [r for r in json.loads((tmp_path / "log.json").read_text()) if r["stage"] == "base"]
    losses = [r["val_loss"] for r in base]
    assert result["n"] == 1 + losses.index(min(losses))
    assert result["onset_detected"] == (len(base) - result["n"] >= 1)
    body, final = stages["branch"]["states"]["rff"], stages["transfer"]["states"]["rff"]
    assert not torch.equal(body["features.0.weight"], final["features.0.weight"])  # fine-tuning moves the body
    assert final["classifier.3.1.weight"].shape == (2, 64)  # Sequential(Dropout, Linear) head


def test_cli_end_to_end_with_two_seeds(tmp_path):
    start = time.perf_counter()
    args = ["train", "--per-class", "20", "--cue", "1", "--epochs", "1", "--transfer-epochs", "2", "--seeds", "0-1",
            "--batch-size", "32", "--device", "cpu", "--threads", "1", "--out", str(tmp_path)]
    run = CliRunner().invoke(main, args)
    elapsed = time.perf_counter() - start
    assert run.exit_code == 0, run.output
    assert "split g.1 seed 1: n=1" in run.output and "a single split is not evidence" in run.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["overall"]["n"] == 1 and report["comparisons"]["rff"]["runs"]["n"] == 2
    assert report["meta"]["config"]["epochs"] == 1
    for name in ("report.txt", "deltas.png", "split-g.1/seed-0/curves.png", "split-g.1/seed-1/log.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert elapsed < 60, f"the tiny end-to-end run took {elapsed:.0f} s"
    again = CliRunner().invoke(main, args + ["--resume"])  # finished runs are read back, not retrained
    assert again.exit_code == 0 and json.loads((tmp_path / "report.json").read_text())["runs"] == report["runs"]


def test_cli_bad_input_messages(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["train", "--data", "cifar100", "--data-root", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "CIFAR-100 not found" in missing.output
    unknown = runner.invoke(main, ["train", "--base", "disk,rign", "--transfer", "star", "--out", str(tmp_path)])
    assert unknown.exit_code == 1 and "did you mean 'ring'" in unknown.output
    (tmp_path / "bad.json").write_text("{}")
    plan = runner.invoke(main, ["train", "--plan", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")])
    assert plan.exit_code == 1 and "not a freeze plan" in plan.output
    seeds = runner.invoke(main, ["train", "--seeds", "a-b"])
    assert seeds.exit_code == 1 and "--seeds must look like" in seeds.output


def test_parse_seeds():
    from rffsurgery.cli.train import parse_seeds

    assert parse_seeds("0-2,7") == [0, 1, 2, 7] and parse_seeds("5") == [5]
    with pytest.raises(ValueError):
        parse_seeds("1,1")
