"""Paired statistics of deltas: mean, Student-t 95% CI, exact sign test, minimal detectable effect, and ratios.

The unit of a headline interval is the **split**, not the run: runs of one split share its
classes, so their deltas are correlated, and an interval over all runs treats them as
independent and comes out too narrow (``tests/test_train_stats.py`` shows its coverage
falling below 95 % when splits differ).  :mod:`.aggregate` therefore summarises the split
means; ratios (error-rate ratios) are summarised on the log scale as a geometric mean.

The t quantile and the power of the paired t-test are computed here (Simpson
integration + bisection) rather than importing SciPy, which is not a dependency of
the package.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

__all__ = ["MIN_RUNS", "RatioSummary", "Summary", "minimal_detectable_effect", "paired_t_power", "sign_test",
           "summarize", "summarize_ratios", "t_interval", "t_quantile", "t_test"]

MIN_RUNS = 5
"""Below this many runs the summary carries a warning: the CI is too wide to tell much."""


def _t_cdf(x: float, df: int) -> float:
    """P(T ≤ x) for x ≥ 0 by composite Simpson integration of the density on [0, x]."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    steps = 4000
    h = x / steps
    total = 0.0
    for i in range(steps + 1):
        weight = 1 if i in (0, steps) else 4 if i % 2 else 2
        total += weight * math.exp(log_norm - (df + 1) / 2 * math.log1p((i * h) ** 2 / df))
    return 0.5 + total * h / 3


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t distribution with ``df`` degrees of freedom."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df ≥ 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def sign_test(deltas: Sequence[float]) -> float | None:
    """Two-sided exact binomial sign test of ``P(delta > 0) = 1/2``; zeros are dropped (``None`` if all are)."""
    pos, neg = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    n = pos + neg
    if n == 0:
        return None
    tail = sum(math.comb(n, k) for k in range(min(pos, neg) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _simpson(f, a: float, b: float, steps: int = 2000) -> float:
    h = (b - a) / steps
    return h / 3 * sum((1 if i in (0, steps) else 4 if i % 2 else 2) * f(a + i * h) for i in range(steps + 1))


def paired_t_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample (paired) t-test at standardised effect ``effect = δ/σ`` with ``n`` pairs.

    Exact: with ``T = (Z + λ)/S``, ``λ = effect·√n``, ``S = √(V/df)``, ``V ~ χ²(df)``,
    power = E_S[Φ(λ − c·S) + Φ(−λ − c·S)] where ``c`` is the t critical value; the
    expectation is a Simpson integral over the density of ``S``.
    """
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    df = n - 1
    c = t_quantile(1 - alpha / 2, df)
    lam = effect * math.sqrt(n)
    log_norm = math.log(2 * df) - (df / 2) * math.log(2) - math.lgamma(df / 2) + (df / 2 - 1) * math.log(df)

    def density(s: float) -> float:  # density of S = sqrt(V/df): 2·df·s·f_χ²(df·s²)
        if s == 0:
            return math.sqrt(2 / math.pi) if df == 1 else 0.0
        return math.exp(log_norm + (df - 1) * math.log(s) - df * s * s / 2)

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    top = 1 + 12 / math.sqrt(df)
    return _simpson(lambda s: density(s) * (phi(lam - c * s) + phi(-lam - c * s)), 0.0, top)


def minimal_detectable_effect(std: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Smallest true mean delta that the two-sided paired t-test at ``alpha`` detects with ``power``, for
    ``n`` pairs whose deltas have standard deviation ``std`` (the observed one, by convention)."""
    lo, hi = 0.0, 1.0
    while paired_t_power(hi, n, alpha) < power:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if paired_t_power(mid, n, alpha) < power else (lo, mid)
    return (lo + hi) / 2 * std


@dataclass(frozen=True)
class Summary:
    """Deltas of one group of runs (a split over seeds, or everything)."""

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    improved: int
    worse: int
    warning: str | None
    sign_p: float | None = None
    mde: float | None = None
    t_p: float | None = None  # two-sided one-sample t-test of mean 0

    def to_dict(self) -> dict:
        return asdict(self)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the two-sided Student-t interval of the mean (needs 2+ values)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def summarize(deltas: Sequence[float], level: float = 0.95, unit: str = "run") -> Summary:
    """Mean, sample standard deviation and t confidence interval of ``deltas`` (``unit`` names one in warnings)."""
    n = len(deltas)
    if n == 0:
        raise ValueError(f"no {unit}s to summarize")
    improved, worse = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    if n == 1:
        hint = "run several seeds (--seeds 0-4)" if unit == "run" else f"use several {unit}s"
        return Summary(1, deltas[0], None, None, None, improved, worse,
                       f"a single {unit} is not evidence: no confidence interval; {hint}", sign_test(deltas))
    mean, std, low, high = t_interval(deltas, level)
    warning = None
    if n < MIN_RUNS:
        warning = f"only {n} {unit}s: the {level:.0%} interval is wide and the sign of the mean may not be reliable"
    return Summary(n, mean, std, low, high, improved, worse, warning, sign_test(deltas),
                   minimal_detectable_effect(std, n, 0.8, 1 - level), t_test(mean, std, n))


def t_test(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of the one-sample t-test of mean 0 (1.0 when every value is 0)."""
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    t = abs(mean) / (std / math.sqrt(n))
    return max(0.0, min(1.0, 2 * (1 - _t_cdf(t, n - 1))))


@dataclass(frozen=True)
class RatioSummary:
    """Geometric mean of positive ratios with a t-interval computed on their logarithms, taken back.

    ``undefined`` counts the ratios left out because a denominator was zero (no errors at all).
    """

    n: int
    geomean: float | None
    ci_low: float | None
    ci_high: float | None
    below_one: int
    above_one: int
    undefined: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_ratios(ratios: Sequence[float | None], level: float = 0.95) -> RatioSummary:
    """Summary of ``ratios`` (``None``: undefined) on the log scale: ``exp`` of the mean log and its interval."""
    defined = [r for r in ratios if r is not None]
    if any(r <= 0 for r in defined):
        raise ValueError("ratios must be positive (a zero numerator has no logarithm)")
    undefined = len(ratios) - len(defined)
    below, above = sum(r < 1 for r in defined), sum(r > 1 for r in defined)
    if not defined:
        return RatioSummary(0, None, None, None, 0, 0, undefined)
    logs = [math.log(r) for r in defined]
    if len(logs) == 1:
        return RatioSummary(1, defined[0], None, None, below, above, undefined)
    mean, _, low, high = t_interval(logs, level)
    return RatioSummary(len(logs), math.exp(mean), math.exp(low), math.exp(high), below, above, undefined)
