"""Linear layers and tensor contractions (matmul, einsum) in einsum terms."""

from __future__ import annotations

from typing import Any

from ..call import Call, RuleError
from ..tensor import Geo, TensorGeom, unite
from .base import lose, tensor_geo

__all__ = ["einsum", "linear", "matmul"]


def linear(call: Call) -> Geo:
    """Linear layers contract the last dim; a spatial last dim (token mixing) becomes global."""
    g = tensor_geo(call)
    return g.with_dims(lose(g, [g.rank - 1], keep_collapsed=False))


def _contract(call: Call, operands: list[tuple[Any, Any, str]], out_letters: str) -> Geo:
    """Tensor contraction in einsum terms: dims named by letters, letters absent from the output are summed.

    Every operand is laid out in the output's letter order (a missing letter is a
    size-1 broadcast dim) and the operands are united: a letter that survives keeps
    its spatial track, a summed spatial letter loses its axis (the output depends
    on the whole axis, or has global context if another operand keeps it local).
    """
    live = []
    for geo, value, letters in operands:
        if not isinstance(geo, TensorGeom):
            continue
        if len(letters) != geo.rank or len(set(letters)) != len(letters):
            raise RuleError(f"cannot match subscripts {letters!r} to a rank-{geo.rank} operand")
        where = {c: d for d, c in enumerate(letters)}
        dims = [geo.dims[where[c]] if c in where else None for c in out_letters]
        shape = tuple(value.shape[where[c]] if c in where else 1 for c in out_letters)
        live.append((geo.with_dims(dims), shape))
    result = unite(live, call.out_shape)
    call.notes.extend(result.notes)
    g = result.geom
    if isinstance(g, TensorGeom):
        axes = [t.axis for t in g.dims if t is not None]
        if len(axes) != len(set(axes)):
            raise RuleError("the product puts one spatial axis in two dims")
    return g


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
    return _contract(call, [(call.geo(0, "input"), a, la), (call.geo(1, "other"), b, lb)], out)


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
    return _contract(call, list(zip(geos, values, expanded)), out)
