"""The placebo (A/A) branch: it trains like model 1 in another data order and perturbs nothing else."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rffsurgery.train import GENERATED_SPLITS, GeneratedSource, ProtocolConfig, run_protocol
from rffsurgery.reports.training import format_table
from rffsurgery.train.protocols.aggregate import aggregate

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = GeneratedSource(per_class=20, cue=1.0)
SPLIT = GENERATED_SPLITS["g.1"]
CFG = ProtocolConfig(epochs=1, transfer_epochs=3, batch_size=32, device="cpu", control=True)


@pytest.fixture(scope="module")
def runs(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("control")
    data = SOURCE.protocol_data(SPLIT, 0)
    with_control = run_protocol(CFG, data, 0, out / "with", split="g.1")
    # without the control, and with the SGD head as the metric: the same models, another number reported
    without = run_protocol(dataclasses.replace(CFG, control=False, probe="sgd"), data, 0, out / "without", split="g.1")
    return with_control, without, json.loads((out / "with" / "log.json").read_text())


def test_control_is_a_normal_epoch_in_another_order(runs):
    result, _, rows = runs
    branch = {r["model"]: r for r in rows if r["stage"] == "branch"}
    assert set(branch) == {"normal", "rff", "control"} and branch["control"]["epoch"] == 2
    # same starting state, no freezing, but another batch order: a different training loss
    assert branch["control"]["train_loss"] != branch["normal"]["train_loss"]
    assert result["control_delta"] == pytest.approx(result["control_accuracy"] - result["normal_accuracy"])
    assert result["control_accuracy"] == result["control_lbfgs"]  # the default metric is the probe


def test_control_does_not_change_the_other_models(runs):
    result, without, _ = runs
    for key in ("normal_lbfgs", "rff_lbfgs", "normal_sgd_final", "rff_sgd_final", "rff_sgd_best"):
        assert result[key] == without[key]
    assert "control_delta" not in without and "control_lbfgs" not in without


def test_report_shows_the_noise_floor(runs):
    result, _, _ = runs
    other = {**result, "seed": 1, "delta": result["delta"] + 0.01, "control_delta": result["control_delta"] - 0.01}
    report = aggregate([result, other])
    assert report["overall_control"]["n"] == 2 and report["overall_control"]["mde"] is not None
    table = format_table(report)
    assert "control − normal" in table and "ctrl Δ" in table and "MDE(80% power)" in table


def test_sgd_probe_reports_the_heads_last_epoch(runs):
    _, result, _ = runs
    assert result["normal_accuracy"] == result["normal_sgd_final"] <= result["normal_sgd_best"]
    assert result["delta"] == result["rff_sgd_final"] - result["normal_sgd_final"]
    assert "normal_lbfgs" in result  # the probe is still measured beside it
