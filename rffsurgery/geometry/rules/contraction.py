"""Linear layers and tensor contractions (matmul, einsum) in einsum terms."""

from __future__ import annotations

import math
from typing import Any

from ..call import Call, RuleError
from ..factors import Spread, has_factors, uniform
from ..tensor import Digit, Geo, Misaligned, Packed, TensorGeom, Track
from ..union import merge_maps, unite
from .base import bound, lose, tensor_geo

__all__ = ["contract", "einsum", "linear", "matmul"]


def linear(call: Call) -> Geo:
    """Linear layers contract the last dim; a spatial last dim (token mixing) becomes global.

    A last dim with factors (a flattened patch, sub-pixel channels) is summed: the
    factors it carries are mixed away, the rest of each axis stays.
    """
    g = tensor_geo(call)
    if not isinstance(g.dims[-1], Packed):
        return g.with_dims(lose(g, [g.rank - 1], keep_collapsed=False))
    spread = Spread.of(g, call.in_shape)
    spread.sum_away(g.rank - 1)
    return spread.geom(g, call.out_shape)


def contract(call: Call, operands: list[tuple[Any, Any, str]], out_letters: str,
             shape: tuple[int, ...] | None = None) -> Geo:
    """Tensor contraction in einsum terms: dims named by letters, letters absent from the output are summed.

    Every operand is laid out in the output's letter order (a missing letter is a
    size-1 broadcast dim) and the operands are united: a letter that survives keeps
    its spatial track, a summed spatial letter loses its axis (the output depends
    on the whole axis, or has global context if another operand keeps it local).
    Operands that carry factors of axes, or one axis in two surviving letters
    (attention scores, query × key), are contracted by :func:`_contract_factors`.
    ``shape`` is the output's (by default the node's).
    """
    shape = tuple(shape if shape is not None else call.out_shape)
    live = [(geo, value, letters) for geo, value, letters in operands if isinstance(geo, TensorGeom)]
    for geo, _, letters in live:
        if len(letters) != geo.rank or len(set(letters)) != len(letters):
            raise RuleError(f"cannot match subscripts {letters!r} to a rank-{geo.rank} operand")
    if any(geo.whole for geo, _, _ in live):
        return TensorGeom.everywhere(len(shape))
    if any(has_factors(geo) for geo, _, _ in live) or _twice(live, out_letters):
        return _contract_factors(call, [op for op in live if not op[0].const], out_letters, shape)
    laid = []
    for geo, value, letters in live:
        where = {c: d for d, c in enumerate(letters)}
        dims = [geo.dims[where[c]] if c in where else None for c in out_letters]
        laid.append((geo.with_dims(dims), tuple(value.shape[where[c]] if c in where else 1 for c in out_letters)))
    result = unite(laid, shape)
    call.notes.extend(result.notes)
    g = result.geom
    if isinstance(g, TensorGeom):
        axes = [t.axis for t in g.dims if t is not None]
        if len(axes) != len(set(axes)):
            raise RuleError("the product puts one spatial axis in two dims")
    return g


def _twice(live: list[tuple[TensorGeom, Any, str]], out_letters: str) -> bool:
    """Whether some axis has a local map in two different surviving letters (query × key)."""
    seen: dict[int, str] = {}
    for geo, _, letters in live:
        for t, c in zip(geo.dims, letters):
            if isinstance(t, Track) and t.map is not None and c in out_letters:
                if seen.setdefault(t.axis, c) != c:
                    return True
    return False


def _contract_factors(call: Call, live: list[tuple[TensorGeom, Any, str]], out_letters: str,
                      shape: tuple[int, ...]) -> Geo:
    """A contraction whose operands carry factors of axes (window attention, a Linear over a patch).

    For each axis the first operand that carries it in an output letter is the
    reference: its digits in output letters spell the output's units.  Another
    operand's digits count as the same where they sit in the same output letter with
    the same sizes (the window index in the batch dims); all its other digits are
    summed (the keys' tokens), which :meth:`Spread.remove` takes away, and the
    reference's digits it lacks are read whatever their value (a key is read by
    every query of its window).  An operand that sums an axis entirely (attention
    over all tokens) makes every output unit read the whole axis: global.  Digits
    in no output letter are summed everywhere.
    """
    ops = [(Spread.of(geo, tuple(value.shape)), {c: k for k, c in enumerate(letters)}) for geo, value, letters in live]
    outs = set(out_letters)
    reference: dict[int, int] = {}
    for c in out_letters:
        for i, (sp, where) in enumerate(ops):
            if c in where:
                for a in sp.axes_in(where[c]):
                    reference.setdefault(a, i)
    for a, r in reference.items():  # the reference's digits in summed letters go; the rest spell the output's units
        sp, where = ops[r]
        sp.remove(a, {d.place for c, k in where.items() if c not in outs and isinstance(sp.dims[k], list)
                      for d in sp.dims[k] if d.axis == a})
    maps: dict[int, list] = {}
    mine: list[set[int]] = []
    for i, (sp, where) in enumerate(ops):
        for a in list(sp.maps):
            if a not in reference:
                sp.remove(a, {d.place for d in sp.digits_of(a)})  # summed everywhere: gone
            elif reference[a] != i and not _align(sp, where, ops[reference[a]], a, outs):
                bound(call, "operands spell an axis with different factors", sp, {a})
        held = {a for a in reference if a in sp.maps}
        for a in held:
            maps.setdefault(a, []).append(sp.maps[a])
        mine.append({a for a in held if sp.maps[a] is not None})
    every = set().union(*mine) if mine else set()
    global_ctx = any(geo.global_ctx for geo, _, _ in live) or any(m != every for m in mine)
    united: dict[int, Any] = {}
    for a, found in maps.items():
        # a unit's own token and the tokens it mixes differ in centre by design: no "branch centres" note
        merged = None if any(m is None for m in found) else merge_maps(found, a, [])
        if isinstance(merged, Misaligned):
            return merged
        units = math.prod(d.size for d in ops[reference[a]][0].digits_of(a))
        united[a] = None if merged is not None and uniform(merged, units) else merged
    out = Spread([], [], [], united)
    for c in out_letters:
        dim: list = []
        lead = trail = 0
        for i, (sp, where) in enumerate(ops):
            k = where.get(c)
            if k is not None and isinstance(sp.dims[k], list) and any(reference.get(a) == i for a in sp.axes_in(k)):
                dim = [d if d.axis is not None and reference.get(d.axis) == i else Digit(None, 1, d.size)
                       for d in sp.dims[k]]
                lead, trail = sp.lead[k], sp.trail[k]
                break
        out.dims.append(dim)
        out.lead.append(lead)
        out.trail.append(trail)
    return out.geom(TensorGeom((), global_ctx=global_ctx), shape)


def _align(sp: Spread, where: dict[str, int], ref: tuple[Spread, dict[str, int]], axis: int, outs: set[str]) -> bool:
    """Re-express ``sp``'s map of ``axis`` in the reference operand's output units (see :func:`_contract_factors`).

    ``False`` when the shared digits come in another order than the reference's (not followed).
    """
    rsp, rwhere = ref
    shared: list[tuple[Digit, Digit]] = []  # (this operand's digit, the reference's)
    for c in sorted(outs & set(where) & set(rwhere)):
        mine, theirs = (_axis_digits(s, w[c], axis) for s, w in ((sp, where), (rsp, rwhere)))
        if mine and [d.size for d in mine] == [d.size for d in theirs]:
            shared.extend(zip(mine, theirs))
    others = {d.place for d in sp.digits_of(axis)} - {d.place for d, _ in shared}
    if not shared:  # it sums everything it holds of the axis into every output unit
        sp.remove(axis, others)
        sp.maps[axis] = None
        return True
    shared.sort(key=lambda pair: pair[1].place)
    if [d.place for d, _ in shared] != sorted(d.place for d, _ in shared):
        return False
    sp.remove(axis, others)
    m = sp.maps.get(axis)
    ref_out = sorted((d for c, k in rwhere.items() if c in outs for d in _axis_digits(rsp, k, axis)),
                     key=lambda d: d.place)
    pairs = [(theirs, d.place) for (_, theirs), d in zip(shared, sp.digits_of(axis))]
    if m is None or [t for t, _ in pairs] == ref_out and all(t.place == p for t, p in pairs):
        return True  # whole, or the same units: nothing to insert
    period = math.prod(d.size for d in ref_out)

    def members(j: int) -> list[int]:
        return [sum((j // t.place) % t.size * p for t, p in pairs)]

    sp.maps[axis] = m.gather(period, math.prod(t.size for t, _ in pairs), members)
    return True


def _axis_digits(sp: Spread, k: int, axis: int) -> list[Digit]:
    dim = sp.dims[k]
    return [d for d in dim if d.axis == axis] if isinstance(dim, list) else []


def matmul(call: Call) -> Geo:
    """Matrix products as contractions (``...ij,...jk->...ik``, with 1-D and batch broadcasting).

    A constant right operand is a linear layer (the row dims keep their tracks);
    two input-dependent operands (attention) unite, and a summed spatial dim makes
    the result depend on the whole axis.
    """
    a, b = call.arg(0, "input"), call.arg(1, "other")
    letters = "abcdefghijklmnopqrstuvw"
    batch = max(a.dim(), b.dim()) - 2
    la = letters[max(batch, 0) - max(a.dim() - 2, 0):max(batch, 0)] + ("xy" if a.dim() > 1 else "y")
    lb = letters[max(batch, 0) - max(b.dim() - 2, 0):max(batch, 0)] + ("yz" if b.dim() > 1 else "y")
    out = letters[:max(batch, 0)] + ("x" if a.dim() > 1 else "") + ("z" if b.dim() > 1 else "")
    return contract(call, [(call.geo(0, "input"), a, la), (call.geo(1, "other"), b, lb)], out)


def einsum(call: Call) -> Geo:
    """torch.einsum with explicit or implicit output and ``...`` broadcasting."""
    equation = call.arg(0, "equation").replace(" ", "")
    values, geos = list(call.args[1:]), list(call.geo_args[1:])
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        values, geos = list(values[0]), list(geos[0])
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(values):
        raise RuleError(f"einsum equation {equation!r} names {len(terms)} operands, got {len(values)}")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)
    ellipsis = [next(spare) for _ in range(max(v.dim() for v in values))]
    expanded = []
    for term, value in zip(terms, values):
        n = value.dim() - (len(term) - 3 if "..." in term else len(term))
        expanded.append(term.replace("...", "".join(ellipsis[len(ellipsis) - n:])) if "..." in term else term)
    if arrow:
        width = max((v.dim() - (len(t) - 3) for t, v in zip(terms, values) if "..." in t), default=0)
        out = rhs.replace("...", "".join(ellipsis[len(ellipsis) - width:]))
    else:
        counts = "".join(expanded)
        out = "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c.islower()))
        width = max((v.dim() - (len(t) - 3) for t, v in zip(terms, values) if "..." in t), default=0)
        out = "".join(ellipsis[len(ellipsis) - width:]) + out
    return contract(call, list(zip(geos, values, expanded)), out)
