"""The receptive-field algebra along one spatial axis.

Araujo, Norris & Sim (Distill, 2019) describe a layer by the affine map from an
output index ``u`` to the input interval ``[u·s − p, u·s − p + k − 1]`` and compose
these maps to get, for every node, the receptive field size ``r``, the effective
stride ``S`` and the effective padding ``P`` with left edge ``u0 = −P + u·S``.

That is exact for convolutions and pooling, but not for the layers that make a
feature map *finer*: nearest upsampling by 2 maps output ``u`` to input
``floor(u/2)``, a transposed convolution reads a different number of inputs at
even and odd outputs, adaptive pooling has windows of alternating size.  All of
them are still *periodic*: shifting ``u`` by a period ``T`` shifts the input
interval by a whole number of pixels ``M``.  :class:`AxisMap` stores exactly
that — the interval for each phase ``0 … T−1`` of the period plus the step — so
composition and union stay exact for every layer we support, and for ordinary
CNNs it degenerates to Distill's ``(r, S, P)`` with ``T = 1``.

Intervals are the *bounding* intervals of the dependency set: composition of
monotone interval maps gives the exact bounding interval, which is what the
gradient of a network with positive weights shows (dilation can leave holes
inside it; the RF is, by the usual convention, the whole span).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from math import gcd

__all__ = ["AxisMap", "AxisRF"]


def _lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b)


@dataclass(frozen=True)
class AxisMap:
    """Output index → input interval along one axis, periodic in the output index.

    For ``u = q·period + j`` the unit reads input indices
    ``lo[j] + q·step … hi[j] + q·step`` (inclusive).  Indices outside the input
    (negative, or past its end) are padding; they are kept unclipped, as in
    Distill, so the same map serves every input size.
    """

    period: int
    step: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.period < 1 or len(self.lo) != self.period or len(self.hi) != self.period:
            raise ValueError(f"malformed AxisMap {self!r}")
        if any(h < l for l, h in zip(self.lo, self.hi)):
            raise ValueError(f"AxisMap with an empty phase: {self!r}")

    # -- constructors -------------------------------------------------------
    @classmethod
    def identity(cls) -> "AxisMap":
        return cls(1, 1, (0,), (0,))

    @classmethod
    def window(cls, kernel: int, stride: int, padding: int, dilation: int = 1) -> "AxisMap":
        """A sliding window: convolution, pooling, explicit padding, cropping."""
        if kernel < 1 or stride < 1 or dilation < 1:
            raise ValueError(f"kernel, stride and dilation must be ≥ 1 (got {kernel}, {stride}, {dilation})")
        return cls(1, stride, (-padding,), (-padding + dilation * (kernel - 1),))

    @classmethod
    def from_function(cls, period: int, step: int, phase: "callable") -> "AxisMap":
        """Build from ``phase(j) -> (lo, hi)`` for ``j`` in one period, then minimise the period."""
        pairs = [phase(j) for j in range(period)]
        return cls(period, step, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)).minimal()

    # -- evaluation ---------------------------------------------------------
    @property
    def stride(self) -> Fraction:
        """Effective stride S: input pixels per output pixel (< 1 after upsampling)."""
        return Fraction(self.step, self.period)

    def interval(self, u: int) -> tuple[int, int]:
        """The (unclipped) input interval read by output index ``u``."""
        q, j = divmod(u, self.period)
        return self.lo[j] + q * self.step, self.hi[j] + q * self.step

    def hull(self, a: int, b: int) -> tuple[int, int]:
        """The bounding interval of everything units ``a … b`` read.

        For a :meth:`monotone` map that is the left edge of ``a`` and the right edge
        of ``b``.  A map that mixes a coarse factor of the axis (MaxViT's grid
        attention: unit ``u`` reads units ``u mod g + k·g``) is not monotone; then the
        leftmost edge is that of the first unit of each phase, the rightmost that of
        the last (``step ≥ 0``: a phase's intervals move right from period to period).
        """
        if self._monotone:
            return self.interval(a)[0], self.interval(b)[1]
        lo = min(self.interval(u)[0] for u in range(a, min(b, a + self.period - 1) + 1))
        hi = max(self.interval(u)[1] for u in range(max(a, b - self.period + 1), b + 1))
        return lo, hi

    # -- algebra ------------------------------------------------------------
    def then(self, outer: "AxisMap") -> "AxisMap":
        """Compose: ``self`` maps this node to the input, ``outer`` maps a later node to this one.

        Bounding intervals compose exactly: a later unit reads every unit in its
        interval, so its input interval is the :meth:`hull` of theirs.
        """
        # Smallest number of outer periods whose input shift is a whole number of our periods.
        reps = self.period // gcd(outer.step, self.period)
        period = outer.period * reps
        step = (outer.step * reps // self.period) * self.step

        def phase(j: int) -> tuple[int, int]:
            return self.hull(*outer.interval(j))

        return AxisMap.from_function(period, step, phase)

    def gather(self, period: int, step: int, members: "callable") -> "AxisMap":
        """Compose with a later map given by the exact set of our units each of its units reads.

        ``members(j)`` lists the units read by later unit ``j`` of the first period;
        unit ``j + q·period`` reads them shifted by ``q·step``.  Unlike :meth:`then`
        the set may have holes (a unit attending to every g-th token), so the hull is
        taken over the members themselves, not over the span between them.
        """
        reps = self.period // gcd(step, self.period)
        total = period * reps
        new_step = (step * reps // self.period) * self.step

        def phase(j: int) -> tuple[int, int]:
            q, r = divmod(j, period)
            units = [m + q * step for m in members(r)]
            if self._monotone:
                return self.interval(min(units))[0], self.interval(max(units))[1]
            return min(self.interval(u)[0] for u in units), max(self.interval(u)[1] for u in units)

        return AxisMap.from_function(total, new_step, phase)

    def monotone(self) -> bool:
        """Whether both edges never move left as the output index grows (then :meth:`hull` is the end units')."""
        return self._monotone

    @functools.cached_property
    def _monotone(self) -> bool:
        if self.period == 1:  # every convolution and pooling
            return self.step >= 0
        ends = [self.interval(u) for u in range(self.period + 1)]
        return all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(ends, ends[1:]))

    def aligned_with(self, other: "AxisMap") -> bool:
        """Same effective stride, so that the union of the two is again periodic."""
        return self.step * other.period == other.step * self.period

    def union(self, other: "AxisMap") -> "AxisMap":
        """Pointwise hull of two maps with the same stride (branches meeting at add/cat/mul)."""
        if not self.aligned_with(other):
            raise ValueError(f"cannot unite maps with strides {self.stride} and {other.stride}")
        period = _lcm(self.period, other.period)
        step = self.step * (period // self.period)

        def phase(j: int) -> tuple[int, int]:
            (a0, a1), (b0, b1) = self.interval(j), other.interval(j)
            return min(a0, b0), max(a1, b1)

        return AxisMap.from_function(period, step, phase)

    def same_centres(self, other: "AxisMap") -> bool:
        """Whether two aligned maps centre every unit on the same input point."""
        period = _lcm(self.period, other.period)
        return all(sum(self.interval(u)) == sum(other.interval(u)) for u in range(period))

    def minimal(self) -> "AxisMap":
        """The same map with the shortest period (keeps sizes and comparisons canonical)."""
        T = self.period
        for t in range(1, T):
            if T % t or (self.step * t) % T:
                continue
            m = self.step * t // T
            if all(
                self.lo[j + t] == self.lo[j] + m and self.hi[j + t] == self.hi[j] + m for j in range(T - t)
            ):
                return AxisMap(t, m, self.lo[:t], self.hi[:t])
        return self

    @functools.cached_property
    def _summary(self) -> "AxisRF":
        return AxisRF.of(self)

    def summary(self) -> "AxisRF":
        """Distill's (r, S, P); cached, since elementwise ops pass the same map object along."""
        return self._summary


@dataclass(frozen=True)
class AxisRF:
    """What users read for one axis of one node: Distill's r, S and P.

    ``size`` is the largest receptive field over the phases of the map (all phases
    are equal unless the path upsamples); ``padding`` is the smallest ``P`` with
    ``−P + u·S ≤`` the left edge of every unit, which is Distill's ``P`` exactly
    when the stride is an integer.  With a fractional stride the unit's interval
    does not start at ``−P + u·S`` and can end past ``−P + u·S + size − 1``:
    :attr:`outer` is the width that bounds every unit (see docs/receptive-fields.md).
    """

    size: int
    stride: Fraction
    padding: Fraction
    map: AxisMap

    @classmethod
    def of(cls, m: AxisMap) -> "AxisRF":
        s = m.stride
        size = max(hi - lo + 1 for lo, hi in zip(m.lo, m.hi))
        padding = max(j * s - lo for j, lo in enumerate(m.lo))
        return cls(size, s, padding, m)

    def interval(self, u: int) -> tuple[int, int]:
        return self.map.interval(u)

    @property
    def min_size(self) -> int:
        """The smallest receptive field over the phases (equal to ``size`` unless the path upsamples)."""
        return min(hi - lo + 1 for lo, hi in zip(self.map.lo, self.map.hi))

    @property
    def outer(self) -> int:
        """The smallest width W with ``[floor(−P + u·S), ceil(−P + u·S) + W − 1]`` ⊇ every unit's interval.

        ``W == size`` when the map has one phase (every path without upsampling); checking one period is exhaustive, since
        shifting ``u`` by the period shifts both the unit and the bound by ``step``.
        """
        s, p = self.stride, self.padding
        return max(hi - math.ceil(j * s - p) + 1 for j, hi in enumerate(self.map.hi))
