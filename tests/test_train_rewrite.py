"""The rewrite experiment (paper 002): CLI on generated data, pairing, bad options, CIFAR-10 files, RFF on rewrites."""

from __future__ import annotations

import json
import pickle
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rffsurgery.cli import main
from rffsurgery.train import DatasetNotFound
from rffsurgery.data.cifar10 import cifar10
from rffsurgery.train.protocols.rewrite import RewriteConfig, classification_data, make_variant
from rffsurgery.data.generated import GeneratedSource

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: the cores are shared

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TINY = ["--per-class", "10", "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--threads", "1"]


def test_cli_runs_the_original_and_each_rewrite_on_the_same_data(tmp_path):
    args = ["train", "--protocol", "rewrite", "--meta-groups", "4", "--conv3d-filters", "8", "--seeds", "0-1",
            "--out", str(tmp_path), *TINY]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["variants"]) == ["original", "meta", "conv3d"]  # no combined variant unless asked
    assert report["meta"]["evaluation"] == "held-out 20%" and report["meta"]["classes"] == 16
    cfg = report["meta"]["config"]
    assert (cfg["model"], cfg["epochs"], cfg["optimizer"], cfg["lr"], cfg["batch_size"]) == (
        "p002-small-cnn", 2, "adam", 1e-3, 32)
    # parameters by hand: p002-small-cnn with 16 classes; meta replaces FC 2048 → 40 by
    # GroupedLinear(2048, 4, 10) (+ biases) and Meta(4, 4); conv3d slides u = C − D/8 + 1 channels
    original = (3 * 6 * 9 + 6 + 13) + (6 * 16 * 9 + 16 + 33) + (16 * 32 * 9 + 32 + 65) + (2048 * 40 + 40 + 1) + (40 * 16 + 16)
    v = report["variants"]
    assert v["original"]["parameters"] == original
    assert v["meta"]["parameters"] == original - (2048 * 40 + 40) + (2048 * 10 + 4 * 10 + 16)
    conv3d = [(6, 16), (16, 32)]
    assert v["conv3d"]["parameters"] == original - sum(9 * c * d + d for c, d in conv3d) + sum(
        (9 * (c - d // 8 + 1) + 1) * 8 for c, d in conv3d)
    # the paired differences are the per-seed differences, summarised
    runs = {(r["variant"], r["seed"]): r for r in report["runs"]}
    # 8 training images per class (80 % of 10); one of them held out to select the epoch, never trained on
    assert len(runs) == 6 and {(r["train_size"], r["selection_size"]) for r in runs.values()} == {(16 * 7, 16)}
    for name in ("meta", "conv3d"):
        deltas = [runs[name, s]["final_accuracy"] - runs["original", s]["final_accuracy"] for s in (0, 1)]
        assert v[name]["final_delta"]["mean"] == pytest.approx(statistics.mean(deltas))
        assert v[name]["final_delta"]["n"] == 2 and v[name]["final_delta"]["ci_low"] is not None
    for (name, seed), r in runs.items():
        chosen = max(range(2), key=r["selection_accuracy"].__getitem__)  # the epoch is chosen on the selection set
        log = json.loads((tmp_path / name / f"seed-{seed}" / "log.json").read_text())
        assert r["selected_epoch"] == chosen + 1 and r["selected_accuracy"] == log[chosen]["val_accuracy"]
        assert r["final_accuracy"] == log[-1]["val_accuracy"] and r["epoch_seconds"] > 0
        assert "best_accuracy" not in r  # no epoch is chosen on the evaluation set
    assert "| meta | 26,992 (0.31×) |" in (tmp_path / "report.md").read_text()
    for name in ("report.txt", "report.md", "accuracy_vs_parameters.png", "curves.png", "meta/seed-1/log.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "Δfinal vs original" in run.output and "Δselected vs original" in run.output and "only 2 runs" in run.output
    again = CliRunner().invoke(main, args)  # never overwritten without --resume
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0 and json.loads((tmp_path / "report.json").read_text())["runs"] == report["runs"]


def test_variants_share_the_initial_weights_of_the_layers_they_keep():
    cfg = RewriteConfig(meta_groups=4, conv3d_filters=8, combined=True)
    assert list(cfg.variants()) == ["original", "meta", "conv3d", "meta+conv3d"]
    models = {name: make_variant(cfg, opts, 10, (3, 32, 32), seed=3) for name, opts in cfg.variants().items()}
    original = models["original"].state_dict()
    for name, model in models.items():
        kept = {k: t for k, t in model.state_dict().items() if k in original and t.shape == original[k].shape}
        assert "features.0.weight" in kept
        for key, tensor in kept.items():
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(tensor, original[key]), (name, key)


def test_generated_data_covers_every_class_with_disjoint_train_and_eval():
    train, test, what = classification_data(GeneratedSource(per_class=10), seed=0)
    assert what == "held-out 20%" and train.classes == test.classes and len(train.classes) == 16
    assert torch.bincount(train.labels).tolist() == [8] * 16 and torch.bincount(test.labels).tolist() == [2] * 16
    flat_train, flat_test = train.images.flatten(1), test.images.flatten(1)
    assert not (flat_train[:, None] == flat_test[None]).all(-1).any()  # no evaluation image is a training image


@pytest.mark.parametrize("extra, message", [
    ([], "needs a rewrite to compare"),
    (["--meta-groups", "4", "--until-overfit"], "--until-overfit: RFF-protocol option"),
    (["--meta-groups", "4", "--transfer-epochs", "3", "--cue", "1"], "--transfer-epochs, --cue: RFF-protocol"),
    (["--meta-groups", "4", "--combined"], "--combined needs both"),
    (["--conv3d-layers", "features.3"], "needs a rewrite to compare"),
    (["--meta-groups", "5"], "5 groups do not divide"),
])
def test_bad_options_give_one_line(tmp_path, extra, message):
    run = CliRunner().invoke(main, ["train", "--protocol", "rewrite", "--out", str(tmp_path), *TINY, *extra])
    assert run.exit_code == 1, run.output
    assert run.output.startswith("error: ") and message in run.output and run.output.count("\n") == 1


def test_combined_is_refused_by_the_rff_protocol(tmp_path):
    run = CliRunner().invoke(main, ["train", "--combined", "--out", str(tmp_path)])
    assert run.exit_code == 1 and "--combined applies to --protocol rewrite only" in run.output


def test_rff_protocol_runs_on_a_rewritten_model(tmp_path):
    args = ["train", "--conv3d-filters", "8", "--meta-groups", "4", "--per-class", "10", "--epochs", "1",
            "--transfer-epochs", "1", "--device", "cpu", "--threads", "1", "--no-plots", "--out", str(tmp_path)]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    result = json.loads((tmp_path / "report.json").read_text())["runs"][0]
    # the paper's layers 7 and 13 are channel-sliding convs now, and still the ones frozen
    assert result["frozen"] == ["features.6.weight", "features.6.bias", "features.12.weight", "features.12.bias"]


# -- CIFAR-10 on disk ---------------------------------------------------------------------------------
def write_cifar10(root: Path, per_batch: int = 6, seed: int = 0) -> None:
    """``root/cifar-10-batches-py/`` with torchvision's file names and keys (protocol-2 pickles)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        entry = {"batch_label": name, "labels": labels.tolist(), "filenames": [f"{name}_{i}.png" for i in labels],
                 "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar10_reader_agrees_with_torchvision(tmp_path, monkeypatch):
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    write_cifar10(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # our files are not the real md5
    train, test = cifar10(tmp_path).train_test(seed=0)
    for ours, flag in ((train, True), (test, False)):
        reference = torchvision.datasets.CIFAR10(str(tmp_path), train=flag, download=False)
        assert ours.classes == tuple(reference.classes)
        np.testing.assert_array_equal(ours.images.permute(0, 2, 3, 1).numpy(), reference.data)  # HWC there
        np.testing.assert_array_equal(ours.labels.numpy(), np.asarray(reference.targets))
    assert cifar10(tmp_path / "cifar-10-batches-py").classes == tuple(CIFAR10_NAMES)  # root may be the folder


def test_cifar10_missing_or_tampered(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"cifar-10-batches-py/data_batch_1.*--download"):
        cifar10(tmp_path / "nowhere")
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"labels": [0]}, protocol=2))
    with pytest.raises(DatasetNotFound, match="does not hold CIFAR-10 data"):
        cifar10(tmp_path)


def test_cli_rewrite_protocol_on_cifar10_evaluates_on_the_test_set(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=40)
    run = CliRunner().invoke(main, ["train", "--protocol", "rewrite", "--data", "cifar10", "--data-root",
                                    str(tmp_path / "data"), "--meta-groups", "4", "--epochs", "1", "--no-plots",
                                    "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["meta"]["source"] == "CIFAR-10" and report["meta"]["evaluation"] == "test"
    meta = report["meta"]
    assert meta["train_size"] + meta["selection_size"] == 200 and 10 <= meta["selection_size"] <= 30
    assert meta["eval_size"] == 40
    assert report["meta"]["config"]["batch_size"] == 128 and report["meta"]["config"]["epochs"] == 1  # paper default
    assert report["variants"]["original"]["parameters"] == 88_170  # p002-small-cnn, 10 classes: the paper's count
