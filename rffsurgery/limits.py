"""The valid range of every number a user gives, in one table, and the check that tensors hold finite numbers.

A number reaches rffsurgery from a command-line option, a keyword argument of the
Python API (``ProtocolConfig``, ``rewrite``, ``erf`` …) or a field of a file (a freeze
plan's schedule).  All three read its range from :data:`LIMITS`, so that zero, a
negative count, NaN, infinity or an integer with hundreds of digits is refused in one
line that names the setting, before it can reach ``range()``, an optimizer or a tensor
constructor.  The CLI turns an entry into a click type (:mod:`rffsurgery.cli.types`),
the configurations and file schemas call :func:`check`.

"Not set" is ``None``, never zero: a count of 0 is out of range like any other bad
value.

:func:`require_finite` is the other half: weights, inputs and gradients that hold NaN
or infinity give results that look normal and mean nothing, so every path that loads
or receives tensors refuses them, naming the tensor.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Iterable

import torch

from .errors import InvalidArgument, RffError, brief

__all__ = ["LIMITS", "Limit", "NON_FINITE_WEIGHTS", "check", "check_fields", "require_finite"]

NON_FINITE_WEIGHTS = ("Use weights saved before training diverged (or train again with a lower --lr): "
                      "results computed from NaN or infinity would look normal and mean nothing.")


@dataclass(frozen=True)
class Limit:
    """An integer or finite real range; ``low``/``high`` ``None`` leave that side open to any finite value."""

    low: float | None = None
    high: float | None = None
    integer: bool = True
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """``"an integer from 1 to 100,000"``, ``"a finite number > 0"``, ``"a number with 0 ≤ x < 1"``."""
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            if self.integer:
                return f"{kind} from {self.low:,} to {self.high:,}"
            return f"a number with {self.low:g} {'<' if self.low_open else '≤'} x {'<' if self.high_open else '≤'} " \
                   f"{self.high:g}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '≥'} {self.low:,}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '≤'} {self.high:,}"
        return kind

    def contains(self, value: Any) -> bool:
        """Whether ``value`` has the right type (never a bool or a string) and lies in the range."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return False
        if not self.integer and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


MAX_EPOCHS = 100_000
SEED = Limit(0, 2**63 - 1)
EPOCHS = Limit(1, MAX_EPOCHS)
WIDTH = Limit(1, 2**20)  # groups, filters, hidden features: more than any layer has

LIMITS: dict[str, Limit] = {
    # training (ProtocolConfig, RewriteConfig, Augment, the datasets)
    "epochs": EPOCHS, "max_epochs": EPOCHS, "patience": EPOCHS, "transfer_epochs": EPOCHS,
    "batch_size": Limit(1, 2**20),
    "lr": Limit(0, None, integer=False, low_open=True),
    "weight_decay": Limit(0, None, integer=False),
    "l1": Limit(0, None, integer=False),
    "dropout": Limit(0, 1, integer=False, high_open=True),
    "rotation": Limit(0, 180, integer=False),
    "zoom": Limit(0, 1, integer=False, high_open=True),
    "cue": Limit(0, 1, integer=False),
    "probe_l2": Limit(0, None, integer=False, low_open=True),
    "holdout": Limit(0, 1, integer=False, low_open=True, high_open=True),
    "selection": Limit(0, 1, integer=False, low_open=True, high_open=True),
    "per_class": Limit(1, 1_000_000),
    "image_size": Limit(1, 8192),
    "workers": Limit(0, 256),
    "threads": Limit(1, 1024),
    "seed": SEED,
    "seed_count": Limit(1, 10_000),
    "random_splits": Limit(1, 10_000),
    # models and rewrites
    "num_classes": Limit(1, 1_000_000),
    "meta_groups": WIDTH, "meta_out": WIDTH, "hidden": WIDTH, "conv3d_filters": WIDTH,
    # tagging and plans
    "top_k": Limit(1, 1_000_000),
    "threshold": Limit(None, None, integer=False),
    "every": EPOCHS, "start": EPOCHS, "stop": EPOCHS, "epoch": EPOCHS,
    # the ERF
    "images": Limit(1, 100_000),
    "batch": Limit(1, 4096),
}
"""Setting name (the keyword argument; the CLI option is ``--`` + the name with dashes) → its range."""


def check(name: str, value: Any, error: type[RffError] = InvalidArgument, label: str | None = None, *,
          required: bool = False) -> Any:
    """``value`` if it is in :data:`LIMITS` [``name``], else ``error`` naming it.

    ``None`` (not set) passes unless ``required``.  ``label`` is how the message names the
    setting (default ``name``: the keyword argument).
    """
    if value is None and not required:
        return None
    limit = LIMITS[name]
    if limit.contains(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if limit.integer else numbers.Real):
        shown = f"{type(value).__name__} {brief(value)}"
    elif isinstance(value, numbers.Integral) and abs(value) >= 10**15:
        shown = f"a {len(str(abs(value)))}-digit number"
    else:
        shown = str(value)
    raise error(f"{label or name} must be {limit.describe()}, got {shown}")


def check_fields(settings: Any) -> None:
    """:func:`check` every field of a dataclass that has a range in :data:`LIMITS`, in field order.

    A settings class (``ProtocolConfig``, ``RewriteConfig``, ``Augment``, a data source)
    calls it from ``__post_init__``, so a new numeric field is checked once its name has
    an entry in the table.
    """
    for f in fields(settings):
        if f.name in LIMITS:
            check(f.name, getattr(settings, f.name))


def require_finite(tensors: Iterable[tuple[str, Any]], what: str, fix: str, error: type[RffError] = RffError) -> None:
    """Refuse the first floating-point tensor of ``(name, tensor)`` pairs holding NaN or infinity.

    ``what`` names where they come from ("weights model.pt", "the input gradient"); ``fix``
    says what to do.  One check per tensor, on its own device.
    """
    for name, tensor in tensors:
        if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()) \
                or tensor.is_meta:
            continue
        finite = tensor.isfinite()
        if not bool(finite.all()):
            nan = int(tensor.isnan().sum())
            bad = int((~finite).sum())
            kind = "NaN" if nan == bad else "infinite" if nan == 0 else "NaN and infinite"
            raise error(f"{what}: tensor '{name}' holds {bad:,} {kind} value(s) of {tensor.numel():,}. {fix}")
