"""Mean delta with a Student-t 95% confidence interval, and an honest word when n is small.

The t quantile is computed here (Simpson integration of the density + bisection)
rather than importing SciPy, which is not a dependency of the package.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

__all__ = ["MIN_RUNS", "Summary", "summarize", "t_quantile"]

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

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(deltas: Sequence[float], level: float = 0.95) -> Summary:
    """Mean, sample standard deviation and t confidence interval of ``deltas``."""
    n = len(deltas)
    if n == 0:
        raise ValueError("no runs to summarize")
    mean = sum(deltas) / n
    improved, worse = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    if n == 1:
        return Summary(1, mean, None, None, None, improved, worse,
                       "a single run is not evidence: no confidence interval; run several seeds (--seeds 0-4)")
    std = math.sqrt(sum((d - mean) ** 2 for d in deltas) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    warning = None
    if n < MIN_RUNS:
        warning = f"only {n} runs: the {level:.0%} interval is wide and the sign of the mean may not be reliable"
    return Summary(n, mean, std, mean - half, mean + half, improved, worse, warning)
