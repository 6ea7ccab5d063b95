"""When the shape pass fails: say why in the user's terms, and bound the real-tensor fallback.

Shapes come from running the graph on the meta device.  When that fails, either the
input is too small for some op (no fallback can help: the message names the op and the
smallest size that runs), or the model's forward needs real values (``.item()``), and
the model is run on real tensors — but only when its parameters plus the activations
at the requested size, extrapolated from what the meta run computed before it failed,
stay under :data:`FALLBACK_LIMIT_GB` (``RFFSURGERY_MEMORY_LIMIT_GB`` overrides it).
"""

from __future__ import annotations

import os
from typing import Sequence

from torch import nn

from ..errors import InvalidArgument, RffError
from ..geometry.propagate import ShapeError, propagate
from ..trace.tracer import Traced

__all__ = ["FALLBACK_LIMIT_GB", "FallbackTooLarge", "MEMORY_ENV", "check_fallback", "check_weights", "explained",
           "fallback_limit"]

FALLBACK_LIMIT_GB = 4.0
MEMORY_ENV = "RFFSURGERY_MEMORY_LIMIT_GB"


class FallbackTooLarge(RffError, MemoryError):
    """Running the model on real tensors for its shapes would need more memory than the limit allows."""


def fallback_limit() -> float:
    text = os.environ.get(MEMORY_ENV, "")
    try:
        return float(text) if text else FALLBACK_LIMIT_GB
    except ValueError:
        raise InvalidArgument(f"{MEMORY_ENV} must be a number of GiB, got {text!r}") from None


def check_fallback(name: str, size: tuple[int, ...], model: nn.Module, failed: ShapeError) -> None:
    """Refuse to run ``model`` on real tensors when parameters + activations would exceed the limit.

    Activations are extrapolated from the meta run: the bytes of every output computed
    before the failure, scaled by the share of the graph they cover (the shape pass
    keeps every node's output).
    """
    tensors = [*model.parameters(), *model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    activations = failed.bytes_done * failed.nodes_total / max(failed.nodes_done, 1)
    need = (weights + activations) / 2**30
    limit = fallback_limit()
    if need > limit:
        raise FallbackTooLarge(
            f"{name} needs real tensors for its shapes ({failed.op} '{failed.node}' cannot run on the meta device: "
            f"{failed.cause}), which would take about {need:.1f} GiB at input {_fmt(size)} (limit {limit:g} GiB): "
            f"give a smaller --input-size, or raise the limit with {MEMORY_ENV}")


def check_weights(name: str, model: nn.Module, why: str) -> None:
    """Refuse to build ``model`` with real weights (for a capture that runs it) when they alone exceed the limit."""
    need = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / 2**30
    limit = fallback_limit()
    if need > limit:
        raise FallbackTooLarge(f"{name}: {why}, and its weights alone take about {need:.1f} GiB (limit {limit:g} GiB): "
                               f"raise the limit with {MEMORY_ENV}")


def _fmt(size: Sequence[int]) -> str:
    return "x".join(map(str, size))


def explained(exc: ShapeError, traced: "Traced", name: str, size: tuple[int, ...],
              declared: Sequence[int] | None = None) -> ShapeError:
    """The shape failure in the user's terms: which input, which model, and what size would work."""
    where = f"{exc.op} '{exc.node}' fails ({exc.cause})" if exc.node else str(exc)
    if exc.too_small:
        side = _smallest_side(traced, size)
        larger = _fmt((size[0], *(max(d, side) for d in size[1:]))).replace("x", ",") if side else ""
        hint = (f"try at least {side} on every spatial axis (--input-size {larger})" if side
                else "try a larger --input-size")
        message = f"input {_fmt(size)} is too small for {name}: {where}; {hint}"
    else:
        hint = f" (it declares {_fmt(declared)})" if declared and tuple(declared) != tuple(size) else ""
        message = (f"{name} cannot run on an input of {_fmt(size)}: {where}. Give the size the model takes{hint} with "
                   "--input-size (channels, then spatial sizes, no batch: e.g. 3,224,224); the model's first "
                   "input must be one image tensor")
    return ShapeError(message, node=exc.node, op=exc.op, cause=exc.cause, too_small=exc.too_small,
                      bytes_done=exc.bytes_done, nodes_done=exc.nodes_done, nodes_total=exc.nodes_total)


def _smallest_side(traced: "Traced", size: tuple[int, ...], limit: int = 8192) -> int | None:
    """The smallest side s such that every spatial size raised to at least s runs (meta device only)."""

    def runs(side: int) -> bool:
        try:
            propagate(traced, (1, size[0], *(max(d, side) for d in size[1:])))
            return True
        except ShapeError:
            return False

    low, high = min(size[1:]), max(2 * min(size[1:]), 8)
    while not runs(high):
        low, high = high, 2 * high
        if high > limit:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if runs(mid) else (mid, high)
    return high
