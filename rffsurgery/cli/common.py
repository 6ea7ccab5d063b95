"""What every command shares: the one error path, "which options did the user give", and small parsers.

Each command lives in its own module of this package and is a few lines over the
Python API; a new command is a module with one ``click.command`` and one
``main.add_command`` line in :mod:`rffsurgery.cli`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import click

from ..analysis import Plan
from ..data import DATASETS, option_users
from ..errors import RffError, first_line
from ..files import prepare_output
from ..limits import LIMITS
from ..models.onnx_file import is_onnx_file
from ..plan import DEFAULT_SCHEDULE, FreezePlan, Schedule, build_freeze_plan
from ..trace.capture import CAPTURES
from .types import number

__all__ = ["DEBUG_ENV", "ERF_INPUTS", "Group", "analysis_options", "check_erf_inputs", "erf_input_options",
           "export_plan", "given_flags", "only_with", "option_group", "parse_unit", "prepare_outputs", "plan_options", "plan_schedule", "policy_options",
           "policy_settings", "pytorch_only", "schedule_option_value"]

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


def prepare_outputs(outputs: dict[str, str | None], force: bool, reading: list[str]) -> None:
    """Check every output file a command will write (option → path, unset ones skipped) before any work:
    no two options name the same file, and none would replace a file without ``--force`` or one being read."""
    given = [(o, os.path.abspath(p)) for o, p in outputs.items() if p]
    clash = [o for o, p in given if [q for _, q in given].count(p) > 1]
    if clash:
        raise click.UsageError(f"{' and '.join(clash)} name the same file: give each its own")
    for option, path in outputs.items():
        if path:
            prepare_output(path, force=force, option=option, reading=reading)


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
        raise click.BadParameter(f"expected output positions like 3,4 (row, column), got '{text}'",
                                 param_hint="--unit") from None


def option_group(*decorators: Callable) -> Callable:
    """Several ``click.option`` decorators as one, in the order given (as ``--help`` lists them)."""
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


analysis_options = option_group(
    click.option("--input-size", "input_size", default=None, metavar="SIZE",
                 help="Input size: 224 (H=W), 224x192 (HxW), or channels first with commas: 1,16000 (1-D), "
                      "3,224,224, 3,16,112,112 (video). Default: the model's own, else 3,224,224."),
    click.option("--num-classes", type=number("num_classes"), default=None, metavar="N",
                 help="Build MODEL with an N-class head (default: the model's own)."),
    click.option("--strict", is_flag=True, help="Fail if an op has no geometry rule instead of reporting it."),
    click.option("--leaf", "leaves", multiple=True, metavar="PKG.MODULE:CLASS",
                 help="Keep modules of this class as single nodes when tracing (repeatable)."),
    click.option("--capture", "how", type=click.Choice(CAPTURES), default="auto", show_default=True,
                 help="How to capture a PyTorch model's graph: torch.fx, torch.export (for models whose Python "
                      "branches on tensor values: the graph holds for the branches a seeded random input takes), "
                      "or auto (fx, then export when fx cannot trace it)."),
)
"""How MODEL is analysed: ``analyze`` and ``report`` take the same."""


def pytorch_only(model: str) -> None:
    """Refuse the options that need a PyTorch model when MODEL is an ONNX file (analysed from its graph)."""
    if is_onnx_file(model):
        only_with(False, given_flags("leaves", "how", "with_erf", "weights"), "PyTorch models, not an ONNX file")

policy_options = option_group(
    click.option("--policy", type=click.Choice(["paper", "growth", "names"]), default=None,
                 help="Tagging policy (default paper). See 'Tagging policies' in the README."),
    click.option("--include-stem", is_flag=True, help="paper: also tag the stem layer that reads the image."),
    click.option("--include-shortcuts", is_flag=True,
                 help="paper: also tag off-main-path layers at each new resolution (projection shortcuts)."),
    click.option("--metric", type=click.Choice(["pixels", "ratio"]), default="pixels", help="growth: score."),
    click.option("--top-k", type=number("top_k"), default=None, help="growth: tag the k largest (default 4)."),
    click.option("--threshold", type=number("threshold"), default=None, help="growth: tag every layer scoring at least this."),
    click.option("--select", "patterns", multiple=True, metavar="GLOB",
                 help="names: node names or glob patterns (repeatable)."),
)
"""Which layers are tagged RF-expanding: read with :func:`policy_settings`."""

plan_options = option_group(
    click.option("--export-plan", "export_path", type=click.Path(dir_okay=False), default=None,
                 help="Write the freeze plan JSON for the tagged layers."),
    click.option("--epochs", default=None, metavar="N[,N…]", help="Plan schedule: frozen in these (1-based) epochs."),
    click.option("--every", type=number("every"), default=None, help="Plan schedule: frozen every k-th epoch …"),
    click.option("--start", type=number("start"), default=1, show_default=True, help="… from this epoch …"),
    click.option("--stop", type=number("stop"), default=None, help="… up to this epoch (default: no end)."),
    click.option("--bn", type=click.Choice(["train", "freeze-affine", "freeze"]), default="train", show_default=True,
                 help="BatchNorm right after a tagged layer: train it, freeze its affine params, or also its stats."),
)
"""The freeze plan to write (``--export-plan``) and its schedule: read with :func:`export_plan`."""

erf_input_options = option_group(
    click.option("--images", type=number("images"), default=8, show_default=True,
                 help="ERF: how many inputs to aggregate |gradient| over."),
    click.option("--data", type=click.Choice(["noise", *DATASETS]), default="noise", show_default=True,
                 help="ERF inputs: Gaussian noise, or images of a dataset as for train --data (any class)."),
    click.option("--data-root", type=click.Path(file_okay=False), default=None,
                 help="Folder of the dataset (every --data but noise and generated)."),
    click.option("--weights", type=click.Path(exists=True), default=None,
                 help="ERF weights: state_dict / .safetensors / trainer checkpoint / rewrite folder. "
                      "Default: random init (labelled)."),
    click.option("--seed", type=number("seed"), default=0, show_default=True, help="Seed of the random weights and inputs."),
    click.option("--batch", type=number("batch"), default=4, show_default=True, help="ERF inputs per forward/backward pass."),
)
"""The inputs and weights an effective receptive field is measured with (``erf``, ``report --erf``)."""

ERF_INPUTS = ("images", "data", "data_root", "weights", "seed", "batch")
"""The parameter names :data:`erf_input_options` adds."""


def check_erf_inputs(data: str) -> None:
    """``--data-root`` only for a ``--data`` that reads a folder (noise and the generated shapes have none)."""
    users = option_users("data_root")
    only_with(data in users, given_flags("data_root"), f"--data {' or '.join(users)}")


def policy_settings(policy: str | None, include_stem: bool, include_shortcuts: bool, metric: str, top_k: int | None,
                    threshold: float | None, patterns: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The tagging policy's name and options from :data:`policy_options`; a usage error for another policy's flag."""
    name = policy or "paper"
    only_with(name == "paper", given_flags("include_stem", "include_shortcuts"), "--policy paper")
    only_with(name == "growth", given_flags("metric", "top_k", "threshold"), "--policy growth")
    only_with(name == "names", given_flags("patterns"), "--policy names")
    if top_k is not None and threshold is not None:
        raise click.UsageError("give either --top-k or --threshold, not both (a threshold tags every layer above it)")
    return name, {
        "paper": {"include_stem": include_stem, "include_shortcuts": include_shortcuts},
        "growth": {"metric": metric, "top_k": top_k if top_k is not None or threshold is not None else 4,
                   "threshold": threshold},
        "names": {"patterns": list(patterns)},
    }[name]


def plan_schedule(export_path: str | None, epochs: str | None, every: int | None, start: int,
                  stop: int | None) -> Schedule:
    """The schedule from :data:`plan_options`; its flags (and ``--bn``) only apply with ``--export-plan``."""
    only_with(bool(export_path), given_flags("epochs", "every", "start", "stop", "bn"), "--export-plan")
    return schedule_option_value(epochs, every, start, stop)


def export_plan(plan: Plan, policy: tuple[str, dict[str, Any]], schedule: Schedule, bn: str, path: str,
                force: bool) -> FreezePlan:
    """Build the freeze plan for the tagged layers, write it to ``path`` and say so on stderr."""
    name, options = policy
    freeze_plan = build_freeze_plan(plan, name, schedule, bn, **options)
    freeze_plan.export(path, force=force)
    click.echo(f"wrote {path}: {len(freeze_plan.tagged)} tagged layer(s), "
               f"{len(freeze_plan.parameter_names)} parameter(s), frozen in {schedule.describe()}", err=True)
    return freeze_plan
