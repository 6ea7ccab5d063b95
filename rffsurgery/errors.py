"""The one base class of the errors a user can cause and fix.

Every library error that a user can cause (a bad name, size, file, plan, dataset,
an untraceable model …) derives from :class:`RffError`; its message is the single
line the CLI prints: what failed, why, and what to do.  The CLI maps these to exit
code 1 and never shows their traceback unless asked (``--debug`` or
``RFFSURGERY_DEBUG=1``); anything else is a bug and is reported as one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InvalidArgument", "MissingDependency", "OutputExists", "RffError", "brief", "first_line", "names"]


class RffError(Exception):
    """An error the user caused and can fix; ``str(exc)`` is the one-line message with the fix."""


class OutputExists(RffError, FileExistsError):
    """An output path already holds a file that would be replaced; pass ``--force`` / ``force=True``."""


class InvalidArgument(RffError, ValueError):
    """An option or API argument of the wrong type, out of range, or in a combination that makes no sense."""


class MissingDependency(RffError, ImportError):
    """An optional package a feature needs (matplotlib, onnx, onnxruntime) is not installed; says what to install."""


def brief(value: object, width: int = 40) -> str:
    """``repr(value)`` cut to ``width`` characters, for naming a wrong value inside a one-line message."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def names(value: Any, what: str, error: type[RffError] = InvalidArgument) -> list[str]:
    """Names or glob patterns as a list: one string is one name, not a sequence of one-character names.

    ``None`` is no names; anything but a string or an iterable of strings is ``error`` naming ``what``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        found = list(value)
    except TypeError:
        found = None
    if found is None or not all(isinstance(v, str) for v in found):
        raise error(f"{what} takes a name or a list of names (strings), got {type(value).__name__} {brief(value)}")
    return found
