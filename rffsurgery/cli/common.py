"""What every command shares: the one error path, "which options did the user give", and small parsers.

Each command lives in its own module of this package and is a few lines over the
Python API; a new command is a module with one ``click.command`` and one
``main.add_command`` line in :mod:`rffsurgery.cli`.
"""

from __future__ import annotations

import os

import click

from ..errors import RffError
from ..limits import LIMITS
from ..plan import DEFAULT_SCHEDULE, Schedule
from ..usercode import first_line

__all__ = ["DEBUG_ENV", "Group", "given_flags", "only_with", "parse_unit", "schedule_option_value"]

DEBUG_ENV = "RFFSURGERY_DEBUG"


class Group(click.Group):
    """A click group with one error path: a user error is one line on stderr and exit code 1.

    Library errors derived from :class:`~rffsurgery.errors.RffError` carry the message;
    anything else is a bug and says how to see its traceback.  ``--debug`` (or
    ``RFFSURGERY_DEBUG=1``) lets every exception through with its traceback.  Usage
    errors stay click's (exit code 2).

    rffsurgery ends a command only through click (``ctx.exit``), never ``sys.exit``; so a
    ``SystemExit`` (or another ``BaseException``) arriving here comes from user code that
    :func:`rffsurgery.usercode.user_code` did not wrap (a model's forward while training),
    and is reported as such with exit code 1, not passed on as a silent exit 0.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BaseException as exc:  # noqa: BLE001 - the one error path: see the docstring
            if _debug(ctx):
                raise
            click.echo(_message(exc), err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _message(exc: BaseException) -> str:
    if isinstance(exc, RffError):
        return "error: " + " ".join(str(exc).split())  # one line, whatever the library wrote
    if isinstance(exc, SystemExit):
        return (f"error: code outside rffsurgery (the model's) called sys.exit({exc.code!r}) before the command "
                "finished, so there is no result; remove that call")
    if not isinstance(exc, Exception):
        return (f"error: code outside rffsurgery (the model's) raised {type(exc).__name__}: {first_line(exc)} before "
                "the command finished, so there is no result; fix that code")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"error: unexpected {type(exc).__name__}{': ' + first if first else ''} (a bug in rffsurgery; "
            f"rerun with --debug or {DEBUG_ENV}=1 for the traceback and report it)")


def given_flags(*names: str) -> list[str]:
    """The flags (``--select``) of those parameters of the current command that the user set."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:  # called from Python, not from the command line
        return []
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params}
    return [flags[n] for n in names if ctx.get_parameter_source(n) not in (click.core.ParameterSource.DEFAULT, None)]


def only_with(condition: bool, flags: list[str], what: str) -> None:
    if flags and not condition:
        raise click.UsageError(f"{', '.join(flags)} only appl{'ies' if len(flags) == 1 else 'y'} with {what}")


def schedule_option_value(epochs: str | None, every: int | None, start: int, stop: int | None) -> Schedule:
    """The plan schedule from ``--epochs`` or ``--every/--start/--stop`` (default: every 2nd epoch from 2)."""
    if epochs and every is not None:
        raise click.UsageError("give either --epochs or --every, not both")
    only_with(every is not None, given_flags("start", "stop"), "--every")
    if epochs:
        try:
            numbers = tuple(int(e) for e in epochs.split(","))
        except ValueError:
            raise click.UsageError(f"--epochs takes a comma-separated list of epoch numbers, got '{epochs}'") from None
        for number in numbers:
            if not LIMITS["epoch"].contains(number):
                raise click.BadParameter(f"{number} is not {LIMITS['epoch'].describe()}", param_hint="--epochs")
        return Schedule(epochs=numbers)
    if every is not None:
        return Schedule(every=every, start=start, stop=stop)
    return DEFAULT_SCHEDULE


def parse_unit(text: str | None) -> tuple[int, ...] | None:
    """``--unit 3,4`` → (3, 4)."""
    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected output positions like 3,4 (row, column), got {text!r}",
                                 param_hint="--unit") from None
