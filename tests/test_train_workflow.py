"""The trainer as a step of the workflow: rewritten models, memory format, plans' schedules, progress, Ctrl-C."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rffsurgery import analyze
from rffsurgery.cli import main
from rffsurgery.errors import InvalidArgument
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import PlanError, Schedule, build_freeze_plan
from rffsurgery.train import ProtocolConfig, select_device
from rffsurgery.train.protocols import rff as protocol
from rffsurgery.train.checkpoint import load_checkpoint
from rffsurgery.train.device import with_memory_format
from rffsurgery.train.model import build_model, model_input_size
from rffsurgery.train.progress import Progress, format_duration

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: the cores are shared

TINY = ["--per-class", "10", "--epochs", "1", "--transfer-epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--no-plots"]


def _train(args: list[str], out: Path):
    return CliRunner().invoke(main, ["train", *TINY, *args, "--out", str(out)])


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory) -> dict[str, Path]:
    """``rffsurgery rewrite --out`` folders of the base CNN: channel-sliding conv and grouped FC + Meta."""
    root = tmp_path_factory.mktemp("rewrites")
    folders = {}
    for name, option in (("conv3d", ["--conv3d-filters", "8"]), ("meta", ["--meta-groups", "4"])):
        run = CliRunner().invoke(main, ["rewrite", "rff-base-cnn", *option, "--out", str(root / name)])
        assert run.exit_code == 0, run.output
        folders[name] = root / name
    return folders


@pytest.mark.parametrize("kind", ["conv3d", "meta"])
def test_train_runs_a_rewrite_folder(rewritten, kind, tmp_path):
    run = _train(["--model", str(rewritten[kind]), "--per-class", "5"], tmp_path)
    assert run.exit_code == 0, run.output
    report = json.loads((tmp_path / "report.json").read_text())
    (result,) = report["runs"]
    # The channel-sliding conv runs as a 4-D conv2d and the Meta head is linear: both keep channels_last on CPU.
    assert "channels_last" in result["device"]
    assert result["frozen"] and 0 <= result["rff_accuracy"] <= 1


def test_rewrite_folder_weights_are_loaded_and_the_head_resized(rewritten):
    saved = torch.load(rewritten["meta"] / "state_dict.pt", weights_only=True)
    model, head, size = build_model(str(rewritten["meta"]), 3)
    assert size == (3, 32, 32) == model_input_size(str(rewritten["meta"]))
    state = model.state_dict()
    body = [k for k in saved if not k.startswith(head + ".")]
    assert body and all(torch.equal(state[k], saved[k]) for k in body)
    assert state[f"{head}.weight"].shape[0] == 3 != saved[f"{head}.weight"].shape[0]


def test_a_folder_without_recipe_is_refused(tmp_path):
    run = _train(["--model", str(tmp_path)], tmp_path / "out")
    assert run.exit_code == 1 and "without recipe.json" in run.output


def test_memory_format_is_chosen_per_model(rewritten):
    cpu = select_device("cpu")
    video = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3))
    assert not with_memory_format(cpu, video).channels_last
    assert with_memory_format(cpu, RFFBaseCNN()).channels_last
    conv3d, _, _ = build_model(str(rewritten["conv3d"]), 8)
    assert with_memory_format(cpu, conv3d).channels_last  # the fast channel-sliding conv has 4-D weights
    assert not with_memory_format(cpu, RFFBaseCNN(), "contiguous").channels_last
    with pytest.raises(InvalidArgument, match=r"needs 4-D weights, but 0\.weight is 5-D"):
        with_memory_format(cpu, video, "channels-last")


# -- plans and their schedules -------------------------------------------------------------------------------------
def _plan(tmp_path: Path, schedule: Schedule) -> Path:
    path = tmp_path / "p.json"
    build_freeze_plan(analyze(RFFBaseCNN(num_classes=8)), schedule=schedule).export(path)
    return path


def test_a_plan_that_does_not_freeze_the_branch_epoch_is_refused_with_the_fix(tmp_path):
    plan = _plan(tmp_path, Schedule(every=2, start=2))  # analyze's default: epochs 2, 4, 6 …
    run = _train(["--plan", str(plan), "--epochs", "4"], tmp_path / "out")
    assert run.exit_code == 1
    assert "freezes in every 2 epoch(s) from epoch 2; the protocol's RFF epoch is n+1=5" in run.output
    assert "--epochs 5" in run.output and not (tmp_path / "out" / "split-g.1" / "seed-0" / "checkpoint.pt").exists()


def test_until_overfit_needs_a_plan_frozen_in_every_possible_branch_epoch():
    plan = build_freeze_plan(analyze(RFFBaseCNN(num_classes=8)), schedule=Schedule(epochs=(5,)))
    cfg = ProtocolConfig(until_overfit=True, max_epochs=6)
    with pytest.raises(PlanError, match=r"any of 2…7 \(not frozen: 2, 3, 4, 6, 7\).*--every 1 --start 2"):
        protocol.check_schedule(plan, cfg)
    protocol.check_schedule(build_freeze_plan(analyze(RFFBaseCNN(num_classes=8)), schedule=Schedule(every=1, start=2)), cfg)
    protocol.check_schedule(plan, ProtocolConfig(epochs=4))  # experiment 1: n+1 = 5 is frozen


def test_the_saved_plan_records_the_epoch_it_was_applied_in(tmp_path):
    plan = _plan(tmp_path, Schedule(every=2, start=2))  # freezes 2 and 4: only 2 is the branch epoch of --epochs 1
    run = _train(["--plan", str(plan)], tmp_path / "out")
    assert run.exit_code == 0, run.output
    saved = json.loads((tmp_path / "out" / "split-g.1" / "seed-0" / "plan.json").read_text())
    assert saved["schedule"] == {"epochs": [2]}
    assert saved["freeze"]["parameters"] == json.loads(plan.read_text())["freeze"]["parameters"]


def test_select_goes_with_policy_names(tmp_path):
    refused = _train(["--select", "features.0"], tmp_path / "a")
    assert refused.exit_code == 1 and "--select names the layers for --policy names" in refused.output
    assert "--policy names" in _train(["--policy", "names"], tmp_path / "b").output
    run = _train(["--policy", "names", "--select", "features.0", "--select", "classifier.1"], tmp_path / "c")
    assert run.exit_code == 0, run.output
    (result,) = json.loads((tmp_path / "c" / "report.json").read_text())["runs"]
    assert result["frozen"] == ["features.0.weight", "features.0.bias", "classifier.1.weight", "classifier.1.bias"]


def test_split_2x_means_experiment_2(tmp_path):
    from rffsurgery.cli.train import _experiment_2
    from rffsurgery.data.splits import resolve_splits

    options = {"until_overfit": False}
    assert _experiment_2(options, resolve_splits("2.3"))
    assert not _experiment_2(options, resolve_splits("1.3,4"))
    with pytest.raises(InvalidArgument, match="mixes experiment 1 \\(1.4\\) and experiment 2 \\(2.3\\)"):
        _experiment_2(options, resolve_splits("2.3,1.4"))


# -- what a person sees ----------------------------------------------------------------------------------------------
def test_progress_lines_reach_stderr_and_the_log_file(tmp_path):
    run = _train(["--seeds", "0-1"], tmp_path)
    assert run.exit_code == 0, run.output
    log = (tmp_path / "train.log").read_text().splitlines()
    assert "rffsurgery train: rff-base-cnn on generated, split(s) g.1 × seed(s) 0, 1; 1 process(es)" in log[0]
    assert "base 8 classes (64 train / 16 val), transfer 2 classes (16 train / 4 val); device cpu" in log[1]
    epochs = [line for line in log if " | " in line]
    assert len(epochs) == 2 * (1 + 2 + 2)  # per seed: base, normal and RFF branch, two transfers
    assert "g.1 seed 0 | base epoch 1/1 | loss " in epochs[0] and "| ETA " in epochs[0]
    assert "g.1 seed 1 | transfer rff epoch 1/1" in epochs[-1]
    for line in epochs:  # the same lines on stderr, with a time of day
        assert line.split(" ", 2)[2] in run.stderr


def test_eta_counts_this_run_and_the_runs_to_come():
    progress = Progress(None, runs=2, per_run={"base": 4, "branch": 2, "transfer": 10}, enabled=False)
    progress.times = {"base": [10.0, 20.0], "transfer": [1.0]}
    # this run: 1 base + 2 branch (costed like base, 15 s) + 9 transfer; the next run: 4 + 2 base-like and 10 transfer
    assert progress.eta({"base": 1, "branch": 2, "transfer": 9}) == 15 * 3 + 9 + 15 * 6 + 10
    assert [format_duration(s) for s in (42, 185, 7620)] == ["42s", "3m05s", "2h07m"]


def test_ctrl_c_says_the_checkpoint_is_safe_and_how_to_resume(tmp_path, monkeypatch):
    real, calls = protocol.train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(protocol, "train_epoch", interrupted)
    args = ["train", "--per-class", "10", "--epochs", "2", "--transfer-epochs", "1", "--device", "cpu",
            "--out", str(tmp_path), "--no-plots"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 130
    assert f"the last checkpoint in {tmp_path} is safe" in run.stderr
    command = run.stderr.strip().splitlines()[-1].strip()
    words = shlex.split(command)  # the options given (in the command's order), not the defaults, and --resume
    assert words[:2] == ["rffsurgery", "train"] and words[-1] == "--resume" and len(words) == len(args) + 2
    assert set(zip(args[1:-1:2], args[2:-1:2])) <= set(zip(words, words[1:])) and "--no-plots" in words
    assert load_checkpoint(tmp_path / "split-g.1" / "seed-0" / "checkpoint.pt")["stage"] == "base"
    monkeypatch.setattr(protocol, "train_epoch", real)
    resumed = CliRunner().invoke(main, shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    rows = json.loads((tmp_path / "split-g.1" / "seed-0" / "log.json").read_text())
    assert [(r["stage"], r["epoch"]) for r in rows][:3] == [("base", 1), ("base", 2), ("branch", 3)]


def test_a_finished_run_keeps_no_model_copies(tmp_path):
    run = _train([], tmp_path)
    assert run.exit_code == 0, run.output
    state = load_checkpoint(tmp_path / "split-g.1" / "seed-0" / "checkpoint.pt")
    assert state["stage"] == "done" and set(state) == {"schema", "schema_version", "tool", "stage", "config", "seed",
                                                       "split", "data", "world_size", "history", "wall_seconds",
                                                       "result"}
    assert not any(isinstance(v, torch.Tensor) for v in state["result"].values())


# -- the GPU code path, run on the CPU for logic ---------------------------------------------------------------------
def test_mixed_precision_path_runs_on_cpu():
    """Autocast, the float16 GradScaler and channels_last inputs: what CUDA runs, here for logic, not speed."""
    from dataclasses import replace

    from rffsurgery.data.base import ImageTensors
    from rffsurgery.train.loop import evaluate, make_batches, train_epoch

    runtime = replace(select_device("cpu"), amp_dtype=torch.float16)
    torch.manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2, ("a", "b"))
    model = RFFBaseCNN(2).to(memory_format=torch.channels_last)
    before = model.features[0].weight.detach().clone()
    stats = train_epoch(model, make_batches(data, runtime, 4), torch.optim.Adam(model.parameters()), runtime, 0)
    assert stats.images == 8 and 0 <= stats.accuracy <= 1 and stats.loss > 0
    assert not torch.equal(before, model.features[0].weight)
    loss, accuracy = evaluate(model, make_batches(data, runtime, 4), runtime)
    assert loss > 0 and 0 <= accuracy <= 1


@pytest.mark.slow
def test_bench_train_runs_the_gpu_settings_on_cpu(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "benchmarks/bench_train.py", "--quick", "--device", "cpu", "--amp", "fp16",
                          "--images", "16", "--batch", "8", "--rounds", "1", "--threads", "1"], cwd=root,
                         env={**__import__("os").environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "device cpu (amp float16, channels_last)" in run.stdout and "RFF epoch / normal epoch time" in run.stdout
