"""Recurrences (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) scanning a sequence dim.

A recurrence carries state from step to step, so every output of a scan depends
on the whole scanned axis (a bidirectional one on both sides; a unidirectional one
on the prefix up to itself, reported as the whole axis with a note).  Its batch dim
is untouched: batch elements never meet, so the axis a model folded into the batch
(sequencer2d scans rows with the columns in the batch) keeps its exact map.

The output shapes follow from the module's configuration (:func:`recurrence_shape`):
running an LSTM on the meta device still steps it once per position, which takes
seconds per layer at 224 px and much longer on larger inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..call import Call, RuleError
from ..tensor import Geo, Track
from .base import tensor_geo

__all__ = ["recurrence", "recurrence_macs", "recurrence_shape"]


def _layout(module: nn.RNNBase, x: torch.Tensor) -> tuple[int | None, int]:
    """(batch dim or ``None`` when unbatched, sequence dim) of the input."""
    if x.dim() == 2:
        return None, 0
    if x.dim() != 3:
        raise RuleError(f"{type(module).__name__} input must be 2-D or 3-D, got {x.dim()}-D")
    return (0, 1) if module.batch_first else (1, 0)


def recurrence_shape(module: nn.RNNBase, args: tuple, kwargs: dict) -> Any:
    """The outputs ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) as meta tensors, without stepping."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3) or x.shape[-1] != module.input_size:
        return None  # a PackedSequence, or an input the module refuses: let it run and say why
    batch, seq = _layout(module, x)
    directions = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    out_size = getattr(module, "proj_size", 0) or hidden
    length, n = x.shape[seq], (x.shape[batch] if batch is not None else None)
    out_shape = [0] * x.dim()
    out_shape[seq], out_shape[-1] = length, directions * out_size
    if batch is not None:
        out_shape[batch] = n
    state = (directions * module.num_layers, *(() if n is None else (n,)))
    output = x.new_zeros(out_shape)
    h = x.new_zeros((*state, out_size))
    if isinstance(module, nn.LSTM):
        return output, (h, x.new_zeros((*state, hidden)))
    return output, h


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def recurrence_macs(module: nn.RNNBase, args: tuple, kwargs: dict) -> int:
    """MACs of a recurrent layer over its input ``(L, H_in)`` or ``(N, L, H_in)``, from its configuration.

    Each of the ``x.numel() / H_in`` steps multiplies the input and the previous state by every
    gate's weights (and an LSTM's projection), per layer and direction.  Counted analytically so
    that nothing steps the recurrence position by position on the meta device.
    """
    x = args[0] if args else kwargs["input"]
    steps = x.numel() // x.shape[-1]
    directions = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0)
    out = proj or module.hidden_size
    total, width = 0, module.input_size
    for _ in range(module.num_layers):
        per_step = _GATES[module.mode] * module.hidden_size * (width + out) + module.hidden_size * proj
        total += directions * per_step
        width = directions * out
    return steps * total


def recurrence(call: Call) -> Geo:
    """The scanned dim depends on its whole axis; the batch dim keeps its map; the final states lose the scan."""
    module = call.module
    if not isinstance(call.input, torch.Tensor):
        raise RuleError("packed sequences have no rule")
    g = tensor_geo(call)
    batch, seq = _layout(module, call.input)
    scanned = g.dims[seq]
    if scanned is not None and not module.bidirectional:
        call.notes.append("unidirectional scan: a unit reads the prefix up to itself, reported as the whole axis")
    dims: list[Track | None] = [None] * g.rank
    if batch is not None:
        dims[batch] = g.dims[batch]
    if scanned is not None:
        dims[seq] = Track(scanned.axis, None, whole=True)
    output = g.with_dims(dims)
    state = g.with_dims([None, *([g.dims[batch]] if batch is not None else []), None])
    if isinstance(module, nn.LSTM):
        return output, (state, state)
    return output, state
