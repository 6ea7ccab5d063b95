"""Elementwise ops and outputs that do not depend on the input."""

from __future__ import annotations

from ..call import Call
from ..tensor import Geo, TensorGeom
from ..union import unite

__all__ = ["constant", "converted", "pointwise"]


def pointwise(call: Call) -> Geo:
    """Elementwise ops of one or more tensors (activations, norms over channels, add, mul, where)."""
    inputs = call.tensor_inputs()
    if len(inputs) == 1 and inputs[0][1] == call.out_shape:
        return inputs[0][0]  # one tensor, same shape: the geometry passes through unchanged
    result = unite(inputs, call.out_shape)
    call.notes.extend(result.notes)
    return result.geom


def converted(call: Call) -> Geo:
    """``x.to(…)``, ``x.type_as(other)``, ``x.float()``: x itself; another tensor argument only names a dtype."""
    g = call.geo(0, "input")
    return g if isinstance(g, TensorGeom) else TensorGeom.constant(len(call.out_shape))


def constant(call: Call) -> Geo:
    """Outputs computed from shapes only (positional encodings, grids, ``zeros_like``)."""
    return TensorGeom.constant(len(call.out_shape))
