"""A Lightning callback that applies a freeze plan's schedule, in the spirit of ``BaseFinetuning``.

>>> from rffsurgery.integrations.lightning import FreezePlanCallback
>>> trainer = lightning.Trainer(max_epochs=10, callbacks=[FreezePlanCallback("plan.json")])

At the start of each training epoch (1-based: ``trainer.current_epoch + 1``) the
plan's parameters are frozen if the plan's schedule says so, and they are restored
at the end of that epoch.  The planned network is found inside the LightningModule
(``self.net = resnet18()``, or the module itself) as :class:`~rffsurgery.plan.FreezeSchedule`
finds it; ``target_path`` says where.  Frozen parameters get ``grad=None`` and
``requires_grad=False``, so any optimizer leaves them bit-identical without a new
parameter group.

Under ``strategy="ddp"`` Lightning's DDP wrapper expects a gradient for every
parameter and fails in a frozen epoch; use ``strategy="ddp_find_unused_parameters_true"``.
"""

from __future__ import annotations

import contextlib
import os

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Lightning callback needs Lightning: pip install 'rffsurgery[lightning]'") from exc

from ..plan.apply import FreezeSchedule
from ..plan.document import FreezePlan, PlanError
from ..plan.wrappers import strict_ddp

__all__ = ["FreezePlanCallback"]


class FreezePlanCallback(pl.Callback):
    """Freeze a :class:`~rffsurgery.plan.FreezePlan`'s parameters in the epochs its schedule names."""

    def __init__(self, plan: FreezePlan | str | os.PathLike[str]) -> None:
        self.plan = plan if isinstance(plan, FreezePlan) else FreezePlan.load(plan)
        self.schedule: FreezeSchedule | None = None
        self._frozen = contextlib.ExitStack()

    @property
    def target_path(self) -> str | None:
        """Where the planned network sits in the LightningModule (``""``: the module itself), once fitting began."""
        return None if self.schedule is None else self.schedule.target_path

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.schedule = FreezeSchedule(pl_module, self.plan)  # checks the fingerprint once

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.schedule is not None, "setup('fit') builds the schedule before training starts"
        epoch = trainer.current_epoch + 1
        if not self.schedule.is_frozen(epoch):
            return
        if strict_ddp(trainer.strategy.model, "") is not None:
            raise PlanError(f"epoch {epoch} freezes parameters, which Lightning's DDP wrapper built without "
                            "find_unused_parameters cannot reduce; use "
                            "Trainer(strategy='ddp_find_unused_parameters_true')")
        self._frozen.enter_context(self.schedule.epoch(epoch))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._frozen.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._frozen.close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._frozen.close()
