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

from .errors import RffError

__all__ = ["UserCodeError", "first_line", "user_code"]


class UserCodeError(RffError):
    """User code exited, raised, or returned something other than what rffsurgery asked it for."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def user_code(subject: str, fix: str) -> Iterator[None]:
    """Run the block as user code: an exit or an exception becomes :class:`UserCodeError` "``subject`` did …; ``fix``".

    ``subject`` names the code the way the user wrote it ("your model factory
    'models.py:build'"); errors of rffsurgery's own (:class:`RffError`) and Ctrl-C pass
    through unchanged.
    """
    try:
        yield
    except (RffError, KeyboardInterrupt):
        raise
    except SystemExit as exc:
        raise UserCodeError(f"{subject} called sys.exit({exc.code!r}) instead of returning, so there is no "
                            f"result; {fix}") from None
    except SyntaxError as exc:
        raise UserCodeError(f"{subject} has a syntax error in {exc.filename} line {exc.lineno}: {exc.msg}; "
                            f"{fix}") from exc
    except BaseException as exc:  # noqa: BLE001 - anything user code raises is reported, never a traceback
        raise UserCodeError(f"{subject} raised {type(exc).__name__}: {first_line(exc)}; {fix}") from exc
