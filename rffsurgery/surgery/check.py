"""Whether a rewritten model still works: it traces, runs forward and backward, and keeps its receptive fields.

The report of what a rewrite did (parameters and MACs before → after, these checks)
is :func:`rffsurgery.reports.rewrite.format_report`.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..analysis import Plan, analyze
from ..trace.tracer import TraceError, trace
from .recipe import Rewritten

__all__ = ["Check", "check"]


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Run ``model`` in train or eval mode, restoring its mode afterwards."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Check:
    """One check of the rewritten model: what, whether it passed, and the evidence."""

    name: str
    ok: bool
    detail: str


def check(rewritten: Rewritten, batch: int = 2) -> list[Check]:
    """Trace, forward, backward and receptive fields of the rewritten model, against the original.

    The rewritten model is traced once: its analysis carries the graph the trace check reports.
    """
    try:
        after: Plan | Exception = analyze(rewritten.after, rewritten.input_size)
    except Exception as exc:  # an analysis failure is reported, not raised: the rewrite itself succeeded
        after = exc
    return [_trace(rewritten, after), *_run(rewritten, batch), _rf(rewritten, after)]


def _trace(rewritten: Rewritten, after: "Plan | Exception") -> Check:
    if isinstance(after, Plan):
        return Check("fx trace", True, f"{len(after.traced.graph.nodes)} nodes")
    try:  # analysis failed: tell tracing failures from later ones
        traced = trace(rewritten.after, input_shape=(1, *rewritten.recipe.input_size))
    except TraceError as exc:
        return Check("fx trace", False, str(exc).splitlines()[0])
    return Check("fx trace", True, f"{len(traced.graph.nodes)} nodes")


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, so a model returning a tuple gets a backward through all of it."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [t for v in value for t in _tensors(v)] if isinstance(value, (tuple, list)) else []


def _shape(value: Any) -> str:
    return "×".join(map(str, value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _run(rewritten: Rewritten, batch: int) -> list[Check]:
    """Forward in train mode on random input, then backward of the output's sum.

    On a copy, so that BatchNorm statistics and gradients of the returned model stay untouched.
    """
    model = copy.deepcopy(rewritten.after).train()
    x = torch.randn(batch, *rewritten.input_size, generator=torch.Generator().manual_seed(0))
    with _mode(rewritten.before, False), torch.no_grad():
        reference = rewritten.before(x)
    try:
        out = model(x)
    except Exception as exc:  # any failure is the finding
        return [Check("forward", False, f"{type(exc).__name__}: {exc}"), Check("backward", False, "not run")]
    forward = Check("forward", _shape(out) == _shape(reference), f"output {_shape(out)} (original {_shape(reference)})")
    try:
        sum(t.float().sum() for t in _tensors(out)).backward()
    except Exception as exc:
        return [forward, Check("backward", False, f"{type(exc).__name__}: {exc}")]
    params = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    detail = f"{len(params) - len(missing)} of {len(params)} parameter tensors receive gradients"
    return [forward, Check("backward", not missing, detail + (f"; none for {', '.join(missing[:5])}" if missing else ""))]


def _last_local(plan: Plan) -> str | None:
    """The deepest local feature map (a flattened one, read per element, is the same receptive field)."""
    local = [layer.name for layer in plan if layer.is_map]
    return local[-1] if local else None


def _rf(rewritten: Rewritten, after: "Plan | Exception") -> Check:
    """Every node the two graphs share (by name, and each replaced module's output) keeps its geometry."""
    try:
        before = analyze(rewritten.before, rewritten.input_size)
    except Exception as exc:  # an analysis failure is reported, not raised: the rewrite itself succeeded
        before = exc
    failed = next((e for e in (after, before) if isinstance(e, Exception)), None)
    if failed is not None:
        return Check("analyze", False, f"{type(failed).__name__}: {failed}")
    shared = list(dict.fromkeys([n for n in before.layers if n in after.layers] + [c.path for c in rewritten.changes]))
    changed = [n for n in shared if _geometry(before[n]) != _geometry(after[n])]
    parts = ["complete" if after.complete else
             "UNKNOWN ops: " + ", ".join(f"{l.name} ({l.op}): {l.reason}" for l in after.unknown)]
    last = _last_local(before)
    if last is not None and last in after:
        parts.append(f"last local node {last}: RF {_rf_text(before[last])} → {_rf_text(after[last])}")
    parts.append(f"{len(shared) - len(changed)} of {len(shared)} shared nodes keep RF, stride and padding")
    if changed:
        parts.append("changed: " + ", ".join(f"{n} {_rf_text(before[n])} → {_rf_text(after[n])}" for n in changed[:5]))
    return Check("analyze", after.complete >= before.complete and not changed, "; ".join(parts))


def _geometry(layer: Any) -> tuple:
    return (layer.status, layer.rf, layer.stride, layer.padding) if layer.status in ("ok", "global") else (layer.status,)


def _rf_text(layer: Any) -> str:
    rf = layer.rf if layer.status in ("ok", "global") else (layer.status,)
    return str(rf[0]) if len(set(rf)) == 1 else "×".join(map(str, rf))
