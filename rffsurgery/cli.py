"""The ``rffsurgery`` command line: a thin layer over the Python API."""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .errors import RffError
from .train.command import train_options


DEBUG_ENV = "RFFSURGERY_DEBUG"


class _Group(click.Group):
    """A click group with one error path: a user error is one line on stderr and exit code 1.

    Library errors derived from :class:`~rffsurgery.errors.RffError` carry the message;
    anything else is a bug and says how to see its traceback.  ``--debug`` (or
    ``RFFSURGERY_DEBUG=1``) lets every exception through with its traceback.  Usage
    errors stay click's (exit code 2).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug") or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            click.echo(_message(exc), err=True)
            ctx.exit(1)


def _message(exc: Exception) -> str:
    if isinstance(exc, RffError):
        return f"error: {exc}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"error: unexpected {type(exc).__name__}{': ' + first if first else ''} (a bug in rffsurgery; "
            f"rerun with --debug or {DEBUG_ENV}=1 for the traceback and report it)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rffsurgery")
@click.option("--debug", is_flag=True, help=f"Show the full traceback of any error (or set {DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """Graph-level surgery on PyTorch models: exact receptive fields, freeze plans, rewrites."""


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _schedule(epochs: str | None, every: int | None, start: int, stop: int | None):
    from .plan import DEFAULT_SCHEDULE, Schedule

    if epochs and every:
        raise click.UsageError("give either --epochs or --every, not both")
    if epochs:
        try:
            return Schedule(epochs=tuple(int(e) for e in epochs.split(",")))
        except ValueError:
            raise click.UsageError(f"--epochs takes a comma-separated list of epoch numbers, got {epochs!r}") from None
    if every:
        return Schedule(every=every, start=start, stop=stop)
    return DEFAULT_SCHEDULE


@main.command()
@click.argument("model")
@click.option("--input-size", "input_size", default=None, metavar="SIZE",
              help="Input size: 224 (H=W), 224x192 (HxW), or channels first with commas: 1,16000 (1-D), "
                   "3,224,224, 3,16,112,112 (video). Default: the model's own, else 3,224,224.")
@click.option("--all", "every_node", is_flag=True, help="Show every node, not only the main layers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every node unless --main).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (every node unless --main).")
@click.option("--main", "main_only", is_flag=True, help="With --json/--csv: only the main layers.")
@click.option("--strict", is_flag=True, help="Fail if an op has no geometry rule instead of reporting it.")
@click.option("--leaf", "leaves", multiple=True, metavar="PKG.MODULE:CLASS",
              help="Keep modules of this class as single nodes when tracing (repeatable).")
@click.option("--tags", "show_tags", is_flag=True, help="Mark the RF-expanding layers (policy below) in the table.")
@click.option("--policy", type=click.Choice(["paper", "growth", "names"]), default=None,
              help="Tagging policy (default paper). See 'Tagging policies' in the README.")
@click.option("--include-stem", is_flag=True, help="paper: also tag the stem layer that reads the image.")
@click.option("--include-shortcuts", is_flag=True,
              help="paper: also tag off-main-path layers at each new resolution (projection shortcuts).")
@click.option("--metric", type=click.Choice(["pixels", "ratio"]), default="pixels", help="growth: score.")
@click.option("--top-k", type=int, default=None, help="growth: tag the k largest (default 4).")
@click.option("--threshold", type=float, default=None, help="growth: tag every layer scoring at least this.")
@click.option("--select", "patterns", multiple=True, metavar="GLOB",
              help="names: node names or glob patterns (repeatable).")
@click.option("--export-plan", "export_path", type=click.Path(dir_okay=False), default=None,
              help="Write the freeze plan JSON for the tagged layers.")
@click.option("--epochs", default=None, metavar="N[,N…]", help="Plan schedule: frozen in these (1-based) epochs.")
@click.option("--every", type=int, default=None, help="Plan schedule: frozen every k-th epoch …")
@click.option("--start", type=int, default=1, show_default=True, help="… from this epoch …")
@click.option("--stop", type=int, default=None, help="… up to this epoch (default: no end).")
@click.option("--bn", type=click.Choice(["train", "freeze-affine", "freeze"]), default="train", show_default=True,
              help="BatchNorm right after a tagged layer: train it, freeze its affine params, or also its stats.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of RF and stride per layer with the tagged layers marked.")
def analyze(model: str, input_size: str | None, every_node: bool, as_json: bool, as_csv: bool, main_only: bool,
            strict: bool, leaves: tuple[str, ...], show_tags: bool, policy: str | None, include_stem: bool, include_shortcuts: bool,
            metric: str, top_k: int | None, threshold: float | None, patterns: tuple[str, ...],
            export_path: str | None, epochs: str | None, every: int | None, start: int, stop: int | None, bn: str,
            plot_path: str | None) -> None:
    """Receptive field (RF), effective stride and padding of every layer of MODEL.

    MODEL is a torchvision or timm name (resnet50, timm:convnext_tiny), a built-in
    (rff-base-cnn) or user code (package.module:factory, file.py:factory).
    No weights are downloaded.
    """
    from .analysis import UnknownOpError, analyze as run
    from .plan import PlanError
    from .report import to_csv, to_json, to_table
    from .tags import TagError
    from .trace import TraceError
    from .zoo import ModelNotFound, import_object

    policy_name = policy or "paper"
    options = {
        "paper": {"include_stem": include_stem, "include_shortcuts": include_shortcuts},
        "growth": {"metric": metric, "top_k": top_k if top_k is not None or threshold is not None else 4,
                   "threshold": threshold},
        "names": {"patterns": list(patterns)},
    }[policy_name]
    wants_tags = show_tags or policy is not None or export_path or plot_path
    try:
        schedule = _schedule(epochs, every, start, stop)
        plan = run(model, input_size, strict=strict, leaf_modules=[import_object(spec) for spec in leaves])
        tags = plan.tags(policy_name, **options) if wants_tags else []
        if export_path:
            freeze_plan = plan.export(export_path, policy_name, schedule, bn, **options)
            click.echo(f"wrote {export_path}: {len(freeze_plan.tagged)} tagged layer(s), "
                       f"{len(freeze_plan.parameter_names)} parameter(s), frozen in {schedule.describe()}", err=True)
        if plot_path:
            from .plot import plot_rf

            click.echo(f"wrote {plot_rf(plan, plot_path, tags)}", err=True)
    except (ModelNotFound, TraceError, UnknownOpError, TagError, PlanError, ValueError) as exc:
        _fail(exc)
    if as_json:
        click.echo(to_json(plan, every_node=not main_only))
    elif as_csv:
        click.echo(to_csv(plan, every_node=not main_only), nl=False)
    else:
        click.echo(to_table(plan, every_node=every_node, tags=tags))


@main.group()
def plan() -> None:
    """Inspect freeze plans."""


@plan.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the validated plan as JSON.")
def plan_show(path: str, as_json: bool) -> None:
    """Validate and pretty-print the freeze plan at PATH."""
    from .plan import FreezePlan, PlanError

    try:
        loaded = FreezePlan.load(path)
    except PlanError as exc:
        _fail(exc)
    click.echo(loaded.to_json() if as_json else loaded.describe())


@plan.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("model")
def plan_check(path: str, model: str) -> None:
    """Check that the plan at PATH fits MODEL (fingerprint and parameter names)."""
    from .plan import FreezePlan, PlanError
    from .zoo import ModelNotFound, resolve

    try:
        loaded = FreezePlan.load(path)
        loaded.check(resolve(model).build("meta"))
    except (PlanError, ModelNotFound) as exc:
        _fail(exc)
    click.echo(f"ok: {path} matches {model} ({len(loaded.parameter_names)} parameters to freeze)")


@main.command()
@click.argument("model")
@click.option("--meta-groups", type=int, default=None, metavar="G",
              help="Replace the head's large FC layer(s) with G-way grouped FC + Meta.")
@click.option("--meta-out", type=int, default=None, metavar="M", help="Meta output groups (default G).")
@click.option("--hidden", type=int, default=None,
              help="Bottleneck width when the classifier itself is replaced (default K/4).")
@click.option("--head-layers", multiple=True, metavar="GLOB",
              help="Linear layers to replace instead of the detected head (module-path globs, repeatable).")
@click.option("--init-from-old", is_flag=True, help="Start the new head from the old weights; report its error.")
@click.option("--conv3d-filters", type=int, default=None, metavar="S",
              help="Replace eligible Conv2d layers with channel-sliding Conv3d of S filters.")
@click.option("--conv3d-layers", multiple=True, metavar="GLOB",
              help="Conv2d layers to consider (module-path globs, repeatable; default: all but the stem).")
@click.option("--input-size", "input_size", default=None, metavar="SIZE", help="As for analyze.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write recipe.json + state_dict.pt into this directory.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Export to ONNX, run onnx.checker and compare onnxruntime with PyTorch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
def rewrite(model: str, meta_groups: int | None, meta_out: int | None, hidden: int | None,
            head_layers: tuple[str, ...], init_from_old: bool, conv3d_filters: int | None,
            conv3d_layers: tuple[str, ...], input_size: str | None, out_dir: str | None, onnx_path: str | None,
            seed: int) -> None:
    """Rewrite MODEL to save parameters: FC head → grouped FC + Meta, Conv2d → Conv3d.

    Prints parameters and MACs before → after per replaced layer and in total, and
    checks that the new model traces, runs forward/backward and keeps its
    receptive fields.  Exits with 1 if a check fails.
    """
    import torch

    from .export import export_onnx
    from .surgery import RewriteError, rewrite as run, save
    from .surgery.report import check, format_report
    from .trace import TraceError
    from .zoo import ModelNotFound

    torch.manual_seed(seed)
    try:
        done = run(model, input_size=input_size, meta_groups=meta_groups, meta_out=meta_out, hidden=hidden,
                   head_layers=head_layers, init="copy" if init_from_old else "random",
                   conv3d_filters=conv3d_filters, conv3d_layers=conv3d_layers)
    except (ModelNotFound, TraceError, RewriteError, ValueError) as exc:
        _fail(exc)
    checks = check(done)
    click.echo(format_report(done, checks))
    ok = all(c.ok for c in checks)
    if out_dir:
        recipe_path, weights_path = save(done, out_dir)
        click.echo(f"wrote {recipe_path} and {weights_path}")
    if onnx_path:
        exported = export_onnx(done.after, done.input_size, onnx_path)
        click.echo(f"wrote {exported}")
        ok = ok and exported.ok
    if not ok:
        sys.exit(1)


@main.command()
@train_options
def train(**options) -> None:
    """Run the RFF protocol: base training, branch (normal vs RFF epoch), transfer, delta with 95% CI.

    Defaults run offline on the built-in generated dataset; --data cifar100 --split all
    reproduces the paper's experiments 1.1–1.10 (add --until-overfit for 2.1–2.10).
    """
    from .plan import PlanError
    from .train import CheckpointError, DatasetNotFound
    from .train.command import run_command
    from .zoo import ModelNotFound

    try:
        run_command(**options)
    except (CheckpointError, DatasetNotFound, ModelNotFound, PlanError, ValueError) as exc:
        _fail(exc)
