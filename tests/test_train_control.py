"""The control arms: the A/A control (another data order) and the layer-matched placebo (other layers frozen).

Each differs from the normal arm by its manipulation only, and adding it changes no other number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from rffsurgery.cli import main
from rffsurgery.reports.training import format_table
from rffsurgery.train import GENERATED_SPLITS, GeneratedSource, ProtocolConfig, run_protocol
from rffsurgery.train.protocols import rff as protocol
from rffsurgery.train.protocols.aggregate import aggregate

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = GeneratedSource(per_class=20, cue=1.0)
SPLIT = GENERATED_SPLITS["g.1"]
CFG = ProtocolConfig(epochs=1, transfer_epochs=3, batch_size=32, device="cpu", control="both")
PAPER = {"features.6.weight", "features.6.bias", "features.12.weight", "features.12.bias"}
PLACEBO = {"features.3.weight", "features.3.bias", "features.9.weight", "features.9.bias"}


@pytest.fixture(scope="module")
def runs(one_thread, tmp_path_factory):
    """With both controls (recording each branch epoch's weights before and after), and without any."""
    out = tmp_path_factory.mktemp("control")
    data = SOURCE.protocol_data(SPLIT, 0)
    calls = {}
    real = protocol.train_epoch

    def spy(model, batches, optimizer, runtime, epoch_seed, augment=None, l1=0.0, desc="", **kw):
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stats = real(model, batches, optimizer, runtime, epoch_seed, augment, l1, desc, **kw)
        calls[desc.split(" ", 3)[3]] = (before, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return stats

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "train_epoch", spy)
        with_controls = run_protocol(CFG, data, 0, out / "with", split="g.1")
    # without controls, and with the SGD head as the metric: the same models, another number reported
    without = run_protocol(dataclasses.replace(CFG, control=None, probe="sgd"), data, 0, out / "without", split="g.1")
    return with_controls, without, json.loads((out / "with" / "log.json").read_text()), calls, out / "with"


def test_aa_is_a_normal_epoch_in_another_order(runs):
    result, _, rows, _, _ = runs
    branch = {r["model"]: r for r in rows if r["stage"] == "branch"}
    assert list(branch) == ["normal", "rff", "placebo", "aa"] and branch["aa"]["epoch"] == 2
    # same starting state, no freezing, but another batch order: a different training loss
    assert branch["aa"]["train_loss"] != branch["normal"]["train_loss"]
    assert result["aa_delta"] == pytest.approx(result["aa_accuracy"] - result["normal_accuracy"])
    assert result["aa_accuracy"] == result["aa_lbfgs"]  # the default metric is the probe


def test_placebo_freezes_its_layers_and_nothing_else(runs):
    result, _, _, calls, workdir = runs
    before, after = calls["branch placebo 2"]
    assert {k for k in before if torch.equal(before[k], after[k])} == PLACEBO
    assert set(result["frozen"]) == PAPER and not PLACEBO & PAPER
    plan = result["placebo_plan"]
    assert plan["layers"] == ["features.3", "features.9"] and plan["tagged_layers"] == ["features.6", "features.12"]
    assert (plan["parameters"], plan["tagged_parameters"]) == (32 * 32 * 9 + 32 + 64 * 64 * 9 + 64,
                                                               32 * 64 * 9 + 64 + 64 * 64 * 9 + 64)
    applied = json.loads((workdir / "placebo-plan.json").read_text())
    assert set(applied["freeze"]["parameters"]) == PLACEBO and applied["schedule"] == {"epochs": [2]}
    assert result["placebo_delta"] == pytest.approx(result["placebo_accuracy"] - result["normal_accuracy"])


def test_placebo_differs_from_normal_only_by_the_frozen_set(runs, tmp_path, monkeypatch):
    """Without its freezing (``freeze`` skipped for the placebo's plan), the placebo arm *is* the normal arm:
    same starting state, data order, random numbers and transfer, to the last bit."""
    real = protocol.freeze

    def freeze_all_but_the_placebo(model, plan, check=True):
        return contextlib.nullcontext() if plan.policy == "names" else real(model, plan, check=check)

    monkeypatch.setattr(protocol, "freeze", freeze_all_but_the_placebo)
    result = run_protocol(CFG, SOURCE.protocol_data(SPLIT, 0), 0, tmp_path, split="g.1")
    for metric in ("lbfgs", "lbfgs_pooled", "sgd_final"):
        assert result[f"placebo_{metric}"] == result[f"normal_{metric}"]
    assert result["rff_lbfgs"] == runs[0]["rff_lbfgs"]  # the RFF arm still froze its layers


def test_controls_do_not_change_the_other_models(runs):
    result, without, _, _, _ = runs
    for key in ("normal_lbfgs", "rff_lbfgs", "normal_lbfgs_pooled", "rff_lbfgs_pooled", "normal_sgd_final",
                "rff_sgd_final"):
        assert result[key] == without[key]
    assert "aa_delta" not in without and "placebo_lbfgs" not in without and without["placebo_plan"] is None
    assert without["arms"] == ["normal", "rff"]


def test_report_shows_every_comparison(runs):
    result, _, _, _, _ = runs
    other = {**result, "seed": 1}
    for arm in ("rff", "placebo", "aa"):
        other[f"{arm}_accuracy"] = result[f"{arm}_accuracy"] - 0.01
    report = aggregate([result, other, {**result, "split": "g.2"}])
    assert list(report["comparisons"]) == ["rff", "placebo", "aa", "rff_vs_placebo"]
    assert report["comparisons"]["placebo"]["split_means"]["n"] == 2
    assert report["comparisons"]["rff_vs_placebo"]["runs"]["n"] == 3
    table = format_table(report)
    for label in ("RFF − normal", "placebo − normal", "A/A − normal", "RFF − placebo", "parameter ratio 0.833",
                  "L-BFGS probe (pooled conv)", "probe fits not converged"):
        assert label in table


def test_sgd_probe_reports_the_heads_last_epoch(runs):
    _, result, _, _, _ = runs
    assert result["normal_accuracy"] == result["normal_sgd_final"] and "normal_sgd_best" not in result
    assert result["delta"] == result["rff_sgd_final"] - result["normal_sgd_final"]
    assert "normal_lbfgs" in result and result["normal_lbfgs_converged"] in (True, False)


@pytest.mark.parametrize("value, expected", [(None, ()), ("aa", ("aa",)), ("placebo", ("placebo",)),
                                             ("both", ("placebo", "aa")), (True, ("aa",)), (False, ())])
def test_control_values(value, expected):
    assert ProtocolConfig(control=value).arms == ("normal", "rff", *expected)


def test_cli_control_choices(tmp_path):
    bad = CliRunner().invoke(main, ["train", "--control", "sham", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "'sham' is not one of 'aa', 'placebo', 'both'" in bad.output
    with pytest.raises(Exception, match="control must be 'aa', 'placebo' or 'both'"):
        ProtocolConfig(control="sham")
    seen = {}
    real = protocol.run_protocol

    def capture(cfg, *args, **kwargs):
        seen["arms"] = cfg.arms
        return None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rffsurgery.train.protocols.experiment.run_protocol", capture)
        for flags, arms in ((["--control"], ("normal", "rff", "aa")), (["--control", "placebo"],
                                                                       ("normal", "rff", "placebo"))):
            run = CliRunner().invoke(main, ["train", "--per-class", "10", "--stop-after", "base", *flags,
                                            "--out", str(tmp_path / flags[-1])])
            assert run.exit_code == 0, run.output
            assert seen.pop("arms") == arms
    assert real is protocol.run_protocol
