"""Calling code the user named: a model factory, the module it lives in, a model's forward.

Such code may raise anything, return anything or end the process (``sys.exit``, a
``BaseException`` of its own); the CLI must still answer in one line with exit status 1
instead of exiting 0 with no result or showing a traceback.  :func:`user_code` is the
one wrapper: :mod:`rffsurgery.models.zoo` imports and calls factories (and leaf classes'
modules) through it, the tracer runs a model's forward through it, and the trainer
builds its models through the zoo.  Ctrl-C (``KeyboardInterrupt``) is the user's own
interruption, not misbehaving code: it passes through (exit status 130).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from .errors import RffError, first_line

__all__ = ["FORWARD_FIX", "UserCodeError", "user_code"]

FORWARD_FIX = "fix the model's forward: it must return the model's output"


class UserCodeError(RffError):
    """User code exited, raised, or returned something other than what rffsurgery asked it for."""


@contextlib.contextmanager
def user_code(subject: str, fix: str, *, exits_only: bool = False) -> Iterator[None]:
    """Run the block as user code: an exit or an exception becomes :class:`UserCodeError` "``subject`` did …; ``fix``".

    ``subject`` names the code the way the user wrote it ("your model factory
    'models.py:build'"); errors of rffsurgery's own (:class:`RffError`) and Ctrl-C pass
    through unchanged.  ``exits_only`` converts only what is not an ``Exception``
    (``sys.exit``, a ``BaseException`` of the user's): for blocks that run the model inside
    rffsurgery's own code (a shape pass, an epoch), whose exceptions are explained there.
    """
    try:
        yield
    except (RffError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - anything user code does is reported, never a traceback
        if exits_only and isinstance(exc, Exception):
            raise
        raise UserCodeError(f"{subject} {_did(exc)}; {fix}") from (None if isinstance(exc, SystemExit) else exc)


def _did(exc: BaseException) -> str:
    """What the user code did, in words."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) instead of returning, so there is no result"
    if isinstance(exc, SyntaxError):
        return f"has a syntax error in {exc.filename} line {exc.lineno}: {exc.msg}"
    return f"raised {type(exc).__name__}: {first_line(exc)}"
