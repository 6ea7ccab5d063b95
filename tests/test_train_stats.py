"""Confidence intervals and the small-n warnings of the trainer report."""

import math

import pytest

from rffsurgery.train.protocols.stats import summarize, t_quantile

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


def _run(split, seed, delta, n=4, normal=0.5):
    return {"split": split, "seed": seed, "n": n, "normal_accuracy": normal, "rff_accuracy": normal + delta,
            "delta": delta, "epoch_time_ratio": 0.9}


def test_aggregate_and_table():
    from rffsurgery.reports.training import format_markdown, format_table
    from rffsurgery.train.protocols.aggregate import aggregate

    runs = [_run("1.1", 0, 0.02), _run("1.1", 1, 0.04), _run("1.2", 0, -0.01, n=7), _run("1.2", 1, -0.03, n=9)]
    report = aggregate(runs)
    assert report["splits"]["1.1"]["summary"]["mean"] == pytest.approx(0.03)
    assert report["splits"]["1.2"]["n"] == [7, 9]
    # the headline is over the 2 split means (+0.03, −0.02), the secondary figure over the 4 runs
    assert report["overall"]["n"] == 2 and report["overall"]["mean"] == pytest.approx(0.005)
    rff = report["comparisons"]["rff"]
    assert rff["runs"]["n"] == 4 and rff["runs"]["improved"] == 2 and rff["splits_improved"] == 1
    # error-rate ratio per split: mean rff error / mean normal error = (0.5 − 0.03) / 0.5 and (0.5 + 0.02) / 0.5
    assert report["splits"]["1.1"]["comparisons"]["rff"]["error_ratio"] == pytest.approx(0.94)
    assert rff["error_ratio"]["geomean"] == pytest.approx(math.sqrt(0.94 * 1.04))
    table = format_table(report)
    assert "1.2         2   7–9" in table and "+0.030" in table and "(0.94)" in table
    assert "warning: RFF − normal: only 2 splits" in table
    markdown = format_markdown(report)
    assert "| `1.1` | 2 | 4 | 0.500 | 0.530 | +0.030 [-0.097, +0.157] (0.94) |" in markdown
    assert "| RFF − normal | +0.005 [-0.313, +0.323] | 0.874 | 1/2 |" in markdown


def test_error_ratio_is_undefined_without_errors():
    from rffsurgery.train.protocols.aggregate import aggregate, error_ratio

    assert error_ratio([0.9, 0.8], [0.7, 0.7]) == pytest.approx(0.15 / 0.3)
    assert error_ratio([1.0], [0.9]) is None and error_ratio([0.9], [1.0]) is None
    report = aggregate([_run("a", 0, 0.0, normal=1.0), _run("b", 0, -0.1, normal=0.8), _run("c", 0, 0.1, normal=0.7)])
    ratio = report["comparisons"]["rff"]["error_ratio"]
    assert ratio["undefined"] == 1 and ratio["n"] == 2 and ratio["geomean"] == pytest.approx(math.sqrt(1.5 * 2 / 3))
    assert any("1 split(s) without errors" in w for w in report["warnings"])


# -- coverage of the intervals on simulated data with a known mean (issue 19) ------------------------------

def _coverage(samples, truth, interval) -> float:
    hits = 0
    for row in samples:
        low, high = interval(row)
        hits += low <= truth <= high
    return hits / len(samples)


def test_t_interval_covers_a_known_mean_95_percent_of_the_time():
    import torch

    from rffsurgery.train.protocols.stats import t_interval

    g = torch.Generator().manual_seed(1)
    for n in (3, 10):
        samples = (0.01 + 0.02 * torch.randn(4000, n, generator=g, dtype=torch.float64)).tolist()
        rate = _coverage(samples, 0.01, lambda row: t_interval(row)[2:])
        assert rate == pytest.approx(0.95, abs=0.012)  # Monte-Carlo SE 0.0034


def test_split_means_are_the_right_unit_when_splits_differ():
    """delta = μ + u_split + e_run: the interval over split means keeps 95 % coverage of μ; the interval over
    all runs treats a split's seeds as independent and covers far less (why the headline uses split means)."""
    import torch

    from rffsurgery.train.protocols.stats import t_interval

    g = torch.Generator().manual_seed(2)
    splits, seeds, mu = 10, 3, 0.005
    split_effect = 0.02 * torch.randn(3000, splits, 1, generator=g, dtype=torch.float64)
    deltas = mu + split_effect + 0.005 * torch.randn(3000, splits, seeds, generator=g, dtype=torch.float64)
    by_split = _coverage(deltas.mean(2).tolist(), mu, lambda row: t_interval(row)[2:])
    pooled = _coverage(deltas.flatten(1).tolist(), mu, lambda row: t_interval(row)[2:])
    assert by_split == pytest.approx(0.95, abs=0.015)
    assert pooled < 0.85


def test_ratio_interval_covers_a_known_geometric_mean():
    import torch

    from rffsurgery.train.protocols.stats import summarize_ratios

    g = torch.Generator().manual_seed(3)
    truth = 0.9  # split-level log ratios ~ N(log 0.9, 0.1²): the geometric mean is 0.9
    samples = torch.exp(math.log(truth) + 0.1 * torch.randn(3000, 10, generator=g, dtype=torch.float64)).tolist()

    def interval(row):
        r = summarize_ratios(row)
        return r.ci_low, r.ci_high

    assert _coverage(samples, truth, interval) == pytest.approx(0.95, abs=0.015)
    assert summarize_ratios([2.0, 0.5, None]).geomean == pytest.approx(1.0)
    assert summarize_ratios([2.0, 0.5, None]).undefined == 1


# -- sign test and minimal detectable effect (issue 11) ---------------------------------

def test_sign_test_by_hand():
    from rffsurgery.train.protocols.stats import sign_test

    # 9 of 10 positive: P(X ≤ 1 | n=10, ½) = (1 + 10) / 1024, two-sided: doubled
    assert sign_test([0.1] * 9 + [-0.1]) == pytest.approx(22 / 1024)
    # zeros are dropped: 5 positive, 0 negative of 5 → 2 / 32
    assert sign_test([0.2, 0.1, 0.3, 0.1, 0.5, 0.0, 0.0]) == pytest.approx(2 / 32)
    assert sign_test([0.1, -0.1]) == 1.0 and sign_test([0.0, 0.0]) is None
    # 3 of 12 negative: P(X ≤ 3) = (1 + 12 + 66 + 220) / 4096
    assert sign_test([1] * 9 + [-1] * 3) == pytest.approx(2 * 299 / 4096)


def test_power_matches_scipy_noncentral_t():
    stats = pytest.importorskip("scipy.stats")
    from rffsurgery.train.protocols.stats import paired_t_power

    for n, effect in ((2, 3.0), (5, 1.2), (10, 1.0), (30, 0.4), (200, 0.2)):
        df, lam = n - 1, effect * math.sqrt(n)
        c = stats.t.ppf(0.975, df)
        expected = stats.nct.sf(c, df, lam) + stats.nct.cdf(-c, df, lam)
        assert paired_t_power(effect, n) == pytest.approx(expected, abs=1e-6)


def test_mde_by_simulation_and_large_n():
    import torch

    from rffsurgery.train.protocols.stats import minimal_detectable_effect

    # large n: the normal approximation (z_.975 + z_.80) σ/√n = 2.8016 σ/√n
    assert minimal_detectable_effect(1.0, 2000) * math.sqrt(2000) == pytest.approx(2.8016, abs=2e-3)
    # n = 10 pairs, σ = 0.02: at a true mean delta of the MDE, the paired t-test rejects 80 % of the time
    n, std = 10, 0.02
    mde = minimal_detectable_effect(std, n)
    g = torch.Generator().manual_seed(0)
    deltas = mde + std * torch.randn(40000, n, generator=g, dtype=torch.float64)
    t = deltas.mean(1) / (deltas.std(1) / math.sqrt(n))
    rate = (t.abs() > t_quantile(0.975, n - 1)).double().mean().item()
    assert rate == pytest.approx(0.80, abs=0.01)  # Monte-Carlo SE 0.002


def test_summary_carries_sign_test_and_mde():
    from rffsurgery.train.protocols.stats import minimal_detectable_effect, sign_test

    deltas = [0.01, 0.03, -0.02, 0.04, 0.02]
    s = summarize(deltas)
    assert s.sign_p == sign_test(deltas) and s.mde == pytest.approx(minimal_detectable_effect(s.std, 5))


def test_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from rffsurgery.train.protocols.stats import t_test

    for values in ([0.01, 0.03, -0.02, 0.04, 0.02], [0.003, 0.001, 0.002, -0.001, 0.004, 0.0, 0.002, 0.001, 0.003, 0.005]):
        s = summarize(values)
        assert s.t_p == pytest.approx(stats.ttest_1samp(values, 0.0).pvalue, abs=1e-6)
    assert t_test(0.0, 0.0, 3) == 1.0
