"""Click types for numeric options, made from :data:`rffsurgery.limits.LIMITS`: one range per setting, everywhere.

``type=number("lr")`` gives ``--lr`` the range the Python API checks too, so a value
out of range (zero, negative, NaN, infinite, hundreds of digits) is a usage error
naming the option (exit 2) before any work starts.
"""

from __future__ import annotations

import math
from typing import Any

import click

from ..limits import LIMITS

__all__ = ["FiniteFloatRange", "number"]


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinity (which compare as in range)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        result = super().convert(value, param, ctx)
        if not math.isfinite(result):
            self.fail(f"{value!s} is not a finite number", param, ctx)
        return result


def number(setting: str) -> click.ParamType:
    """The click type of the option for ``setting``: an ``IntRange`` or a finite ``FloatRange``."""
    limit = LIMITS[setting]
    if limit.integer:
        return click.IntRange(limit.low, limit.high)
    return FiniteFloatRange(limit.low, limit.high, min_open=limit.low_open, max_open=limit.high_open)
