"""Confidence intervals and the small-n warnings of the trainer report."""

import math

import pytest

from rffsurgery.train.stats import summarize, t_quantile

# Two-sided 95% critical values of Student's t from standard tables.
TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df, value", sorted(TABLE.items()))
def test_t_quantile_matches_printed_tables(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-4)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 7, 50):
        for p in (0.9, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8)


def test_summary_by_hand():
    deltas = [0.01, 0.03, -0.02, 0.04, 0.02]
    s = summarize(deltas)
    mean = 0.016
    sd = math.sqrt(sum((d - mean) ** 2 for d in deltas) / 4)
    half = 2.776445 * sd / math.sqrt(5)
    assert (s.n, s.improved, s.worse) == (5, 4, 1)
    assert s.mean == pytest.approx(mean)
    assert s.std == pytest.approx(sd)
    assert (s.ci_low, s.ci_high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    assert s.warning is None


def test_small_n_is_flagged():
    one = summarize([0.05])
    assert one.ci_low is None and "single run is not evidence" in one.warning
    three = summarize([0.05, 0.01, 0.0])
    assert three.ci_low is not None and "only 3 runs" in three.warning
    assert (three.improved, three.worse) == (2, 0)


def _run(split, seed, delta, n=4):
    return {"split": split, "seed": seed, "n": n, "normal_accuracy": 0.5, "rff_accuracy": 0.5 + delta,
            "delta": delta, "epoch_time_ratio": 0.9}


def test_aggregate_and_table():
    from rffsurgery.train.report import aggregate, format_table

    runs = [_run("1.1", 0, 0.02), _run("1.1", 1, 0.04), _run("1.2", 0, -0.01, n=7), _run("1.2", 1, -0.03, n=9)]
    report = aggregate(runs)
    assert report["splits"]["1.1"]["summary"]["mean"] == pytest.approx(0.03)
    assert report["splits"]["1.2"]["n"] == [7, 9]
    assert report["overall"]["n"] == 4 and report["overall"]["improved"] == 2
    assert report["splits_improved"] == 1
    table = format_table(report)
    assert "1.2         2    7–9" in table and "+0.030" in table and "splits with a positive mean delta: 1/2" in table
    assert "warning: only 4 runs" in table
