"""The periodic interval algebra against brute-force enumeration of index maps.

Ground truth here is the definition itself: compose the per-layer "output index →
input interval" functions by enumerating units, with no algebra involved.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings, strategies as st

from rffsurgery.geometry.algebra import AxisMap
from rffsurgery.geometry.rules.conv import transposed_map
from rffsurgery.geometry.rules.resample import adaptive_map, interpolation_map


def window_fn(k, s, p, d):
    return lambda u: (u * s - p, u * s - p + d * (k - 1))


def upsample_fn(f):
    return lambda u: (u // f, u // f)


def transposed_fn(k, s, p, d):
    def f(u):
        reads = [(u + p - j * d) // s for j in range(k) if (u + p - j * d) % s == 0]
        return min(reads), max(reads)
    return f


layers = st.one_of(
    st.tuples(st.just("window"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 3), st.integers(1, 3)),
    st.tuples(st.just("up"), st.integers(2, 3)),
    st.tuples(st.just("tconv"), st.integers(2, 4), st.integers(1, 3), st.integers(0, 2), st.just(1)),
)


def build(layer):
    kind, *a = layer
    if kind == "window":
        return AxisMap.window(*a), window_fn(*a)
    if kind == "up":
        return AxisMap.from_function(a[0], 1, lambda j: (j // a[0], j // a[0])), upsample_fn(a[0])
    k, s, p, d = a
    if k * d < s:  # unconnected phases: not a valid test layer
        k = s
    return transposed_map(k, s, p, d), transposed_fn(k, s, p, d)


@settings(max_examples=200, deadline=None)
@given(st.lists(layers, min_size=1, max_size=6))
def test_composition_matches_enumeration(chain):
    total = AxisMap.identity()
    fns = []
    for layer in chain:
        m, f = build(layer)
        total = total.then(m)
        fns.append(f)
    for u in range(-5, 40):
        lo, hi = u, u
        for f in reversed(fns):  # from the last layer back to the input
            lo, hi = f(lo)[0], f(hi)[1]
        assert total.interval(u) == (lo, hi)


@settings(max_examples=100, deadline=None)
@given(st.lists(layers, min_size=1, max_size=3), st.lists(layers, min_size=1, max_size=3))
def test_union_is_pointwise_hull(a, b):
    ma, mb = AxisMap.identity(), AxisMap.identity()
    for layer in a:
        ma = ma.then(build(layer)[0])
    for layer in b:
        mb = mb.then(build(layer)[0])
    if not ma.aligned_with(mb):
        return
    merged = ma.union(mb)
    for u in range(30):
        (a0, a1), (b0, b1) = ma.interval(u), mb.interval(u)
        assert merged.interval(u) == (min(a0, b0), max(a1, b1))


def test_distill_closed_form_on_alexnet_table_1():
    # the RFF paper's Table 1 (docs/rff-method.md), from the top: maxpool(3,2) conv(3,1) conv(3,1) conv(3,1) maxpool(3,2) conv(5,1)
    # maxpool(3,2) conv(11,4); r grows 1, 3, 5, 7, 9, 19, 23, 47, 195 by r_{l-1} = s_l r_l + (k_l - s_l).
    chain = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]  # input side first
    m = AxisMap.identity()
    for k, s in chain:
        m = m.then(AxisMap.window(k, s, 0))
    assert m.summary().size == 195 and m.summary().stride == 32


def test_summary_of_upsampling_is_exact():
    up = AxisMap.from_function(2, 1, lambda j: (j // 2, j // 2))
    rf = up.then(AxisMap.window(3, 1, 1)).summary()  # 3x3 conv after 2x nearest upsampling
    assert rf.stride == Fraction(1, 2) and rf.size == 2
    assert [up.then(AxisMap.window(3, 1, 1)).interval(u) for u in range(4)] == [(-1, 0), (0, 1), (0, 1), (1, 2)]


def test_adaptive_pool_windows_match_pytorch_definition():
    for n, o in [(7, 3), (10, 4), (5, 5), (6, 4), (224, 7)]:
        m = adaptive_map(n, o)
        for i in range(o):
            assert m.interval(i) == (math.floor(i * n / o), math.ceil((i + 1) * n / o) - 1)


def test_bilinear_skips_zero_weight_neighbours():
    # scale 1/2 (2x upsampling), align_corners=False: src = (u + 0.5) / 2 - 0.5 is never an integer
    m = interpolation_map("bilinear", 8, 16, Fraction(1, 2), False)
    assert [m.interval(u) for u in range(4)] == [(-1, 0), (0, 1), (0, 1), (1, 2)]
    # align_corners=True, 5 -> 9: src = u / 2 is an integer at even u, where one input has all the weight
    m = interpolation_map("bilinear", 5, 9, Fraction(1, 2), True)
    assert [m.interval(u) for u in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
