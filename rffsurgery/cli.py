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
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                raise
            click.echo(_message(exc), err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _message(exc: Exception) -> str:
    if isinstance(exc, RffError):
        return "error: " + " ".join(str(exc).split())  # one line, whatever the library wrote
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"error: unexpected {type(exc).__name__}{': ' + first if first else ''} (a bug in rffsurgery; "
            f"rerun with --debug or {DEBUG_ENV}=1 for the traceback and report it)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rffsurgery")
@click.option("--debug", is_flag=True, help=f"Show the full traceback of any error (or set {DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """Graph-level surgery on PyTorch models: exact receptive fields, freeze plans, rewrites."""


def given_flags(*names: str) -> list[str]:
    """The flags (``--select``) of those parameters of the current command that the user set."""
    ctx = click.get_current_context()
    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params}
    return [flags[n] for n in names if ctx.get_parameter_source(n) not in (click.core.ParameterSource.DEFAULT, None)]


def _only_with(condition: bool, flags: list[str], what: str) -> None:
    if flags and not condition:
        raise click.UsageError(f"{', '.join(flags)} only appl{'ies' if len(flags) == 1 else 'y'} with {what}")


def _schedule(epochs: str | None, every: int | None, start: int, stop: int | None):
    from .plan import DEFAULT_SCHEDULE, Schedule

    if epochs and every:
        raise click.UsageError("give either --epochs or --every, not both")
    _only_with(every is not None, given_flags("start", "stop"), "--every")
    if epochs:
        try:
            numbers = tuple(int(e) for e in epochs.split(","))
        except ValueError:
            raise click.UsageError(f"--epochs takes a comma-separated list of epoch numbers, got {epochs!r}") from None
        return Schedule(epochs=numbers)
    if every:
        return Schedule(every=every, start=start, stop=stop)
    return DEFAULT_SCHEDULE


@main.command()
@click.argument("model")
@click.option("--input-size", "input_size", default=None, metavar="SIZE",
              help="Input size: 224 (H=W), 224x192 (HxW), or channels first with commas: 1,16000 (1-D), "
                   "3,224,224, 3,16,112,112 (video). Default: the model's own, else 3,224,224.")
@click.option("--num-classes", type=int, default=None, metavar="N",
              help="Build MODEL with an N-class head (default: the model's own).")
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
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="growth: tag the k largest (default 4).")
@click.option("--threshold", type=float, default=None, help="growth: tag every layer scoring at least this.")
@click.option("--select", "patterns", multiple=True, metavar="GLOB",
              help="names: node names or glob patterns (repeatable).")
@click.option("--export-plan", "export_path", type=click.Path(dir_okay=False), default=None,
              help="Write the freeze plan JSON for the tagged layers.")
@click.option("--epochs", default=None, metavar="N[,N…]", help="Plan schedule: frozen in these (1-based) epochs.")
@click.option("--every", type=click.IntRange(min=1), default=None, help="Plan schedule: frozen every k-th epoch …")
@click.option("--start", type=click.IntRange(min=1), default=1, show_default=True, help="… from this epoch …")
@click.option("--stop", type=click.IntRange(min=1), default=None, help="… up to this epoch (default: no end).")
@click.option("--bn", type=click.Choice(["train", "freeze-affine", "freeze"]), default="train", show_default=True,
              help="BatchNorm right after a tagged layer: train it, freeze its affine params, or also its stats.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of RF and stride per layer with the tagged layers marked.")
@click.option("--node", default=None, help="With --unit / --overlay: the node (or module path) to look at.")
@click.option("--unit", "unit_text", default=None, metavar="I,J",
              help="Print the exact input interval of this output position of --node.")
@click.option("--overlay", "overlay_image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Draw the RF of --node's --unit on this image (resized as the model sees it).")
@click.option("--out-image", "out_image", type=click.Path(dir_okay=False), default=None,
              help="The PNG that --overlay writes.")
@click.option("--with-erf", is_flag=True, help="--overlay: also draw the unit's ERF on the image.")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="--with-erf: weights (state_dict, .safetensors, checkpoint, rewrite folder); default random init.")
@click.option("--force", is_flag=True, help="Replace existing output files (--export-plan, --plot, --out-image).")
def analyze(model: str, input_size: str | None, num_classes: int | None, every_node: bool, as_json: bool, as_csv: bool, main_only: bool,
            strict: bool, leaves: tuple[str, ...], show_tags: bool, policy: str | None, include_stem: bool, include_shortcuts: bool,
            metric: str, top_k: int | None, threshold: float | None, patterns: tuple[str, ...],
            export_path: str | None, epochs: str | None, every: int | None, start: int, stop: int | None, bn: str,
            plot_path: str | None, node: str | None, unit_text: str | None, overlay_image: str | None,
            out_image: str | None, with_erf: bool, weights: str | None, force: bool) -> None:
    """Receptive field (RF), effective stride and padding of every layer of MODEL.

    MODEL is a torchvision or timm name (resnet50, timm:convnext_tiny), a built-in
    (rff-base-cnn) or user code (package.module:factory, file.py:factory).
    No weights are downloaded.
    """
    from .analysis import analyze as run
    from .files import prepare_output
    from .plan import build_freeze_plan
    from .report import to_csv, to_json, to_table
    from .tags import tag
    from .zoo import import_module_class, source_files

    policy_name = policy or "paper"
    _only_with(as_json or as_csv, given_flags("main_only"), "--json or --csv")
    if as_json and as_csv:
        raise click.UsageError("give either --json or --csv, not both")
    _only_with(policy_name == "paper", given_flags("include_stem", "include_shortcuts"), "--policy paper")
    _only_with(policy_name == "growth", given_flags("metric", "top_k", "threshold"), "--policy growth")
    _only_with(policy_name == "names", given_flags("patterns"), "--policy names")
    _only_with(bool(export_path), given_flags("epochs", "every", "start", "stop", "bn"), "--export-plan")
    if export_path and plot_path and os.path.abspath(export_path) == os.path.abspath(plot_path):
        raise click.UsageError("--export-plan and --plot name the same file")
    reading = source_files(model)
    for option, path in (("--export-plan", export_path), ("--plot", plot_path)):
        if path:
            prepare_output(path, force=force, option=option, reading=reading)
    if plot_path:
        from .plot import image_format, plot_rf, pyplot

        pyplot()  # fail before the analysis when matplotlib is missing or the file type is unknown
        image_format(plot_path)
    options = {
        "paper": {"include_stem": include_stem, "include_shortcuts": include_shortcuts},
        "growth": {"metric": metric, "top_k": top_k if top_k is not None or threshold is not None else 4,
                   "threshold": threshold},
        "names": {"patterns": list(patterns)},
    }[policy_name]
    wants_tags = show_tags or policy is not None or export_path or plot_path
    unit = _unit(unit_text)
    if (unit is not None or overlay_image) and (node is None or unit is None):
        raise click.UsageError("--unit and --overlay need both --node NAME and --unit I,J")
    if overlay_image and not out_image or out_image and not overlay_image:
        raise click.UsageError("--overlay IMAGE and --out-image PNG go together")
    if (with_erf or weights) and not overlay_image:
        raise click.UsageError("--with-erf and --weights draw on an --overlay image")
    schedule = _schedule(epochs, every, start, stop)
    plan = run(model, input_size, strict=strict, leaf_modules=[import_module_class(spec) for spec in leaves],
               num_classes=num_classes)
    tags = tag(plan, policy_name, **options) if wants_tags else []
    if export_path:
        freeze_plan = build_freeze_plan(plan, policy_name, schedule, bn, **options)
        freeze_plan.export(export_path, force=force)
        click.echo(f"wrote {export_path}: {len(freeze_plan.tagged)} tagged layer(s), "
                   f"{len(freeze_plan.parameter_names)} parameter(s), frozen in {schedule.describe()}", err=True)
    if plot_path:
        click.echo(f"wrote {plot_rf(plan, plot_path, tags, force=force)}", err=True)
    if overlay_image:
        _overlay(model, plan, node, unit, overlay_image, out_image, with_erf, weights, force)
    if unit is not None:
        from .overlay import describe_unit

        click.echo(describe_unit(plan, node, unit))
    elif as_json:
        click.echo(to_json(plan, every_node=not main_only))
    elif as_csv:
        click.echo(to_csv(plan, every_node=not main_only), nl=False)
    else:
        click.echo(to_table(plan, every_node=every_node, tags=tags))


def _unit(text: str | None) -> tuple[int, ...] | None:
    """``--unit 3,4`` → (3, 4)."""
    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected output positions like 3,4 (row, column), got {text!r}",
                                 param_hint="--unit") from None


@main.command()
@click.argument("model")
@click.option("--nodes", "nodes", multiple=True, metavar="NAME[,NAME…]",
              help="Nodes or module paths (repeatable). Default: the last node with a local RF.")
@click.option("--unit", "unit_text", default=None, metavar="I,J", help="Output position. Default: each node's centre.")
@click.option("--images", type=int, default=8, show_default=True, help="How many inputs to aggregate |gradient| over.")
@click.option("--data", type=click.Choice(["noise", "generated", "folder", "cifar100"]), default="noise",
              show_default=True, help="Inputs: Gaussian noise, the trainer's generated shapes, an image folder, CIFAR-100.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Folder for --data folder/cifar100.")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="state_dict / .safetensors / trainer checkpoint / rewrite folder. Default: random init (labelled).")
@click.option("--input-size", "input_size", default=None, metavar="C,H,W", help="As for analyze.")
@click.option("--growth", is_flag=True, help="Also compute the ERF of the main layers (up to 24) and plot its growth.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write erf.json, erf-NODE.png heat maps (and growth.png) into this folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights and inputs.")
@click.option("--batch", type=int, default=4, show_default=True, help="Inputs per forward/backward pass.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def erf(model: str, nodes: tuple[str, ...], unit_text: str | None, images: int, data: str, data_root: str | None,
        weights: str | None, input_size: str | None, growth: bool, out_dir: str | None, seed: int, batch: int,
        force: bool) -> None:
    """Effective receptive field of MODEL: the input gradient of a unit, aggregated over inputs.

    Prints, per node, the theoretical RF and the sides (and area ratios) of the
    smallest centred squares holding 20/30/50/99 % of the contribution; --out writes
    the heat maps with the theoretical RF drawn on them and the JSON.
    """
    import json
    from pathlib import Path

    from .analysis import analyze as analyse_only
    from .erf import default_node, erf as run, growth_nodes
    from .files import prepare_output, write_text
    from .plot import plot_erf, plot_erf_growth

    names = [n.strip() for group in nodes for n in group.split(",") if n.strip()]
    if growth and unit_text:
        raise click.UsageError("--growth measures each layer's centre unit; drop --unit (or --growth)")
    if not names or growth:
        shapes = analyse_only(model, input_size)  # on the meta device: which nodes, before building weights
        names = names or [default_node(shapes)]
    extra = growth_nodes(shapes) if growth else []
    out = Path(out_dir) if out_dir else None
    if out is not None:  # fail before the work when a rerun would replace the results
        prepare_output(out / "erf.json", force=force, option="--out", make_parents=True)
    result = run(model, [*names, *extra], images=images, data=data, data_root=data_root, input_size=input_size,
                 weights=weights, unit=_unit(unit_text), seed=seed, batch=batch)
    click.echo(result.table())
    if out is not None:
        heat_maps = {out / f"erf-{result[n].node}.png": result[n] for n in names}
        paths = [out / "erf.json", *heat_maps, *([out / "growth.png"] if growth else [])]
        for path in paths:  # every file checked before any is written
            prepare_output(path, force=force, option="--out")
        written = [plot_erf(result, node, path, force=True) for path, node in heat_maps.items()]
        if growth:
            written.append(plot_erf_growth(result, out / "growth.png", force=True))
        written.append(write_text(out / "erf.json", json.dumps(result.to_dict()) + "\n"))
        click.echo("wrote " + ", ".join(map(str, written)), err=True)


def _overlay(model: str, plan, node: str, unit: tuple[int, ...], image: str, out: str, with_erf: bool,
             weights: str | None, force: bool) -> None:
    from .files import prepare_output
    from .overlay import check_unit, draw_overlay, find_layer

    check_unit(find_layer(plan, node), unit)
    prepare_output(out, force=force, option="--out-image", reading=[image])
    heat = None
    if with_erf:
        from .erf import erf
        from .images import normalise, read_image

        x = normalise(read_image(image, plan.input_size[1:]), plan.input_size[0])[None]
        heat = erf(model, [node], inputs=x, input_size=plan.input_size, weights=weights, unit=unit).nodes[0]
    click.echo(f"wrote {draw_overlay(image, plan, node, unit, out, heat, force)}", err=True)


@main.group()
def plan() -> None:
    """Inspect freeze plans."""


@plan.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the validated plan as JSON.")
def plan_show(path: str, as_json: bool) -> None:
    """Validate and pretty-print the freeze plan at PATH."""
    from .plan import FreezePlan

    loaded = FreezePlan.load(path)
    click.echo(loaded.to_json() if as_json else loaded.describe())


@plan.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("model")
@click.option("--num-classes", type=int, default=None, metavar="N", help="Build MODEL with an N-class head.")
def plan_check(path: str, model: str, num_classes: int | None) -> None:
    """Check that the plan at PATH fits MODEL (parameter names, fingerprint of the graph up to the frozen layers)."""
    from .plan import FreezePlan
    from .zoo import resolve

    loaded = FreezePlan.load(path)
    found = loaded.check(resolve(model).build_cheapest(num_classes))
    where = f" (the network at '{found}')" if found else ""
    click.echo(f"ok: {path} matches {model}{where} ({len(loaded.parameter_names)} parameters to freeze)")


@main.command()
@click.argument("model")
@click.option("--meta-groups", type=click.IntRange(min=1), default=None, metavar="G",
              help="Replace the head's large FC layer(s) with G-way grouped FC + Meta.")
@click.option("--meta-out", type=click.IntRange(min=1), default=None, metavar="M", help="Meta output groups (default G).")
@click.option("--hidden", type=click.IntRange(min=1), default=None,
              help="Bottleneck width when the classifier itself is replaced (default K/4).")
@click.option("--head-layers", multiple=True, metavar="GLOB",
              help="Linear layers to replace instead of the detected head (module-path globs, repeatable).")
@click.option("--init-from-old", is_flag=True, help="Start the new head from the old weights; report its error.")
@click.option("--conv3d-filters", type=click.IntRange(min=1), default=None, metavar="S",
              help="Replace eligible Conv2d layers with channel-sliding Conv3d of S filters.")
@click.option("--conv3d-layers", multiple=True, metavar="GLOB",
              help="Conv2d layers to consider (module-path globs, repeatable; default: all but the stem).")
@click.option("--input-size", "input_size", default=None, metavar="SIZE", help="As for analyze.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write recipe.json + state_dict.pt into this directory.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Export to ONNX, run onnx.checker and compare onnxruntime with PyTorch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--force", is_flag=True, help="Replace existing --out / --onnx files.")
def rewrite(model: str, meta_groups: int | None, meta_out: int | None, hidden: int | None,
            head_layers: tuple[str, ...], init_from_old: bool, conv3d_filters: int | None,
            conv3d_layers: tuple[str, ...], input_size: str | None, out_dir: str | None, onnx_path: str | None,
            seed: int, force: bool) -> None:
    """Rewrite MODEL to save parameters: FC head → grouped FC + Meta, Conv2d → Conv3d.

    Prints parameters and MACs before → after per replaced layer and in total, and
    checks that the new model traces, runs forward/backward and keeps its
    receptive fields.  Exits with 1 if a check fails.
    """
    import torch

    from .export import export_onnx, require_onnx
    from .files import prepare_output
    from .surgery import rewrite as run, save
    from .surgery.recipe import check_save
    from .surgery.report import check, format_report
    from .zoo import source_files

    _only_with(meta_groups is not None, given_flags("meta_out", "hidden", "head_layers", "init_from_old"), "--meta-groups")
    _only_with(conv3d_filters is not None, given_flags("conv3d_layers"), "--conv3d-filters")
    reading = source_files(model)
    if out_dir:
        check_save(out_dir, force=force, reading=reading)
    if onnx_path:
        require_onnx()
        prepare_output(onnx_path, force=force, option="--onnx", reading=reading)
    torch.manual_seed(seed)
    done = run(model, input_size=input_size, meta_groups=meta_groups, meta_out=meta_out, hidden=hidden,
               head_layers=head_layers, init="copy" if init_from_old else "random",
               conv3d_filters=conv3d_filters, conv3d_layers=conv3d_layers)
    checks = check(done)
    click.echo(format_report(done, checks))
    ok = all(c.ok for c in checks)
    if out_dir:
        recipe_path, weights_path = save(done, out_dir, force=force)
        click.echo(f"wrote {recipe_path} and {weights_path}")
    if onnx_path:
        exported = export_onnx(done.after, done.input_size, onnx_path, force=force)
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
    --meta-groups / --conv3d-filters run it on the rewritten model; --protocol rewrite
    instead trains the original and each rewrite and compares them (paper 002).
    """
    from .train.command import run_command

    run_command(**options)
