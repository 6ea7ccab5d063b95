"""Applying a freeze plan: a context manager, a DDP-safe variant and an epoch-driven schedule.

Freezing sets ``requires_grad=False`` *and* clears ``.grad``: an optimizer skips
parameters whose gradient is ``None``, so momentum and (decoupled) weight decay
cannot move a frozen weight, and autograd skips its weight-gradient work.  All three
find the planned network inside wrappers (DDP, DataParallel, ``torch.compile``, a
LightningModule holding it), see :meth:`~.document.FreezePlan.locate`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..analysis.result import Plan
from ..errors import InvalidArgument
from ..models.given import require_module
from .document import FreezePlan, PlanError, some_names
from .wrappers import strict_ddp

__all__ = ["FreezeSchedule", "ddp_frozen", "freeze"]


def freeze(model: nn.Module, plan: "FreezePlan | Sequence[str]",
           check: bool = True) -> contextlib.AbstractContextManager[list[str]]:
    """Freeze the plan's parameters for the duration of the block, then restore them.

    Frozen parameters get ``requires_grad=False`` and ``grad=None`` (so SGD momentum,
    Adam moments and weight decay leave them bit-identical); in the plan's
    ``"freeze"`` BatchNorm mode the running statistics of the listed BatchNorm
    layers are restored on exit as well.  ``model`` may wrap the planned network
    (see :meth:`FreezePlan.locate`); the block gets the frozen names as ``model``
    names them.  ``plan`` may also be a plain list of parameter names of ``model``
    (no fingerprint check).  Under DistributedDataParallel see :func:`ddp_frozen`.
    """
    model = require_module(model, "freeze()")
    if isinstance(plan, (str, bytes)) or not isinstance(plan, (FreezePlan, Sequence)):
        hint = f"; for one parameter write [{plan!r}]" if isinstance(plan, str) else \
            "; make one from this analysis with build_freeze_plan(analysis)" if isinstance(plan, Plan) else ""
        raise InvalidArgument(f"freeze() takes a FreezePlan or a list of parameter names, "
                              f"got {type(plan).__name__}{hint}")
    if isinstance(plan, FreezePlan):
        path, network = plan.locate(model, check=check)
        names, bn_names = list(plan.parameter_names), list(plan.kept_statistics)
    else:
        path, network, names, bn_names = "", model, list(plan), []
        if not names:
            raise PlanError("empty freeze set")
        if not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"freeze() takes parameter names (strings), got {names[:3]!r}")
    _refuse_strict_ddp(model, path)
    return _frozen(network, path, names, bn_names)


def _refuse_strict_ddp(model: nn.Module, path: str) -> None:
    if strict_ddp(model, path) is not None:
        raise PlanError("freezing parameters of a DistributedDataParallel model built without "
                        "find_unused_parameters=True fails at its second step; freeze with "
                        "'with rffsurgery.plan.ddp_frozen(ddp_model, plan) as net:' and train net in that block "
                        "(it re-wraps without the frozen parameters), or build DDP with find_unused_parameters=True")


@contextlib.contextmanager
def _frozen(network: nn.Module, path: str, names: list[str], bn_names: list[str]) -> Iterator[list[str]]:
    params = dict(network.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise PlanError(f"the model has no parameter(s) {some_names(unknown)}")
    modules = dict(network.named_modules())
    saved_flags = {n: params[n].requires_grad for n in names}
    saved_stats = {m: {k: v.detach().clone() for k, v in modules[m].named_buffers(recurse=False)} for m in bn_names}
    try:
        for n in names:
            params[n].requires_grad_(False)
            params[n].grad = None
        yield [f"{path}.{n}" if path else n for n in names]
    finally:
        for n, flag in saved_flags.items():
            params[n].requires_grad_(flag)
        with torch.no_grad():
            for m, buffers in saved_stats.items():
                for k, v in buffers.items():
                    getattr(modules[m], k).copy_(v)


@contextlib.contextmanager
def ddp_frozen(model: nn.Module, plan: "FreezePlan | Sequence[str]", check: bool = True,
               **ddp_options: Any) -> Iterator[DistributedDataParallel]:
    """Freeze the plan's parameters and yield a DistributedDataParallel built while they are frozen.

    DDP decides when it is built which parameters it all-reduces (those that require
    gradients) and, without ``find_unused_parameters=True``, fails at the second step
    of a block in which some stop receiving gradients.  A wrapper built *after*
    freezing leaves them out: no reduction error, and no per-step search for unused
    parameters.  ``model`` is the DDP model (its ``.module`` is re-wrapped) or the
    bare network; ``ddp_options`` are passed to the new wrapper (e.g.
    ``device_ids=[rank]``).  Every rank must enter the block together (building DDP
    is a collective).  Train with the yielded wrapper inside the block and with your
    own one outside it::

        for epoch in range(1, epochs + 1):
            if schedule.is_frozen(epoch):
                with ddp_frozen(ddp, plan, device_ids=[rank]) as net:
                    train_one_epoch(net)
            else:
                train_one_epoch(ddp)
    """
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    with freeze(inner, plan, check=check):
        yield DistributedDataParallel(inner, **ddp_options)


class FreezeSchedule:
    """Epoch-driven application of a plan for any training loop.

    >>> sched = FreezeSchedule(model, plan)          # checks the model once
    >>> for epoch in range(1, epochs + 1):
    ...     with sched.epoch(epoch):                  # frozen only in the plan's epochs
    ...         train_one_epoch(model)

    ``model`` may wrap the planned network (DataParallel, ``torch.compile``, a
    LightningModule holding it); ``target_path`` says where it was found (``""``:
    ``model`` itself).  Under DistributedDataParallel use :func:`ddp_frozen` in the
    frozen epochs.
    """

    def __init__(self, model: nn.Module, plan: FreezePlan) -> None:
        self.model, self.plan = model, plan
        self.target_path, self.target = plan.locate(model)

    def is_frozen(self, epoch: int) -> bool:
        return self.plan.schedule.is_frozen(epoch)

    def epoch(self, epoch: int) -> contextlib.AbstractContextManager[list[str]]:
        """A context that freezes the plan's parameters if ``epoch`` (1-based) is scheduled, else does nothing."""
        if not self.is_frozen(epoch):
            return contextlib.nullcontext([])
        _refuse_strict_ddp(self.model, self.target_path)
        return _frozen(self.target, self.target_path, list(self.plan.parameter_names),
                       list(self.plan.kept_statistics))
