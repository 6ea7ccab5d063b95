"""Freeze plans: which parameters to freeze in which epochs, as a versioned JSON file any training loop can apply.

* :mod:`.document` — :class:`FreezePlan` (schema, load/export, model check), :class:`Schedule`,
  :func:`build_freeze_plan` from an analysis and a tagging policy;
* :mod:`.fingerprint` — the fingerprint of the graph up to the frozen layers;
* :mod:`.wrappers` — finding the planned network inside DDP, ``torch.compile``, Lightning;
* :mod:`.apply` — :func:`freeze`, :func:`ddp_frozen`, :class:`FreezeSchedule`.
"""

from .apply import FreezeSchedule, ddp_frozen, freeze
from .document import BN_MODES, DEFAULT_SCHEDULE, FreezePlan, PlanError, Schedule, build_freeze_plan

__all__ = ["BN_MODES", "DEFAULT_SCHEDULE", "FreezePlan", "FreezeSchedule", "PlanError", "Schedule",
           "build_freeze_plan", "ddp_frozen", "freeze"]
