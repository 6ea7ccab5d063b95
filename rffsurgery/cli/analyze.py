"""``rffsurgery analyze``: the table (or JSON/CSV) of RF, stride and padding; tags, plans, plots, overlays."""

from __future__ import annotations

from pathlib import Path

import click

from ..analysis import analyze, check_unit, describe_unit, find_layer
from ..analysis.erf import erf
from ..data.images import normalise, read_image
from ..files import prepare_output
from ..models.zoo import import_module_class, source_files
from ..reports.graph import FORMATS as GRAPH_FORMATS
from ..reports.graph import write_graph
from ..reports.overlay import draw_overlay
from ..reports.plot import image_format, plot_rf, pyplot
from ..reports.table import to_csv, to_json, to_table
from ..tags import tag
from .common import (
    analysis_options,
    export_plan,
    given_flags,
    only_with,
    parse_unit,
    plan_options,
    plan_schedule,
    policy_options,
    policy_settings,
    prepare_outputs,
    pytorch_only,
)

__all__ = ["analyze_command"]


@click.command("analyze")
@click.argument("model")
@analysis_options
@click.option("--all", "every_node", is_flag=True, help="Show every node, not only the main layers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every node unless --main).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (every node unless --main).")
@click.option("--main", "main_only", is_flag=True, help="With --json/--csv: only the main layers.")
@click.option("--tags", "show_tags", is_flag=True, help="Mark the RF-expanding layers (policy below) in the table.")
@policy_options
@plan_options
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of RF and stride per layer with the tagged layers marked.")
@click.option("--graph", "graph_path", type=click.Path(dir_okay=False), default=None,
              help="Write the analysed graph (every node, with RF, stride, padding, params, MACs and tags) as "
                   "GraphML (.graphml) or node-link JSON (.json), for networkx, Gephi, yEd and the like.")
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
@click.option("--force", is_flag=True, help="Replace existing output files (--export-plan, --plot, --graph, --out-image).")
def analyze_command(model: str, input_size: str | None, num_classes: int | None, strict: bool, leaves: tuple[str, ...],
                    how: str, every_node: bool, as_json: bool, as_csv: bool, main_only: bool, show_tags: bool,
                    policy: str | None, include_stem: bool, include_shortcuts: bool, metric: str, top_k: int | None,
                    threshold: float | None, patterns: tuple[str, ...], export_path: str | None, epochs: str | None,
                    every: int | None, start: int, stop: int | None, bn: str, plot_path: str | None,
                    graph_path: str | None, node: str | None, unit_text: str | None, overlay_image: str | None,
                    out_image: str | None, with_erf: bool, weights: str | None, force: bool) -> None:
    """Receptive field (RF), effective stride and padding of every layer of MODEL.

    MODEL is a torchvision or timm name (resnet50, timm:convnext_tiny), a built-in
    (rff-base-cnn), user code (package.module:factory, file.py:factory) or an ONNX
    file (model.onnx, from any framework). No weights are downloaded or read.
    """
    pytorch_only(model)
    only_with(as_json or as_csv, given_flags("main_only"), "--json or --csv")
    if as_json and as_csv:
        raise click.UsageError("give either --json or --csv, not both")
    policy_name, options = settings = policy_settings(policy, include_stem, include_shortcuts, metric, top_k,
                                                      threshold, patterns)
    schedule = plan_schedule(export_path, epochs, every, start, stop)
    if unit_text is not None and (as_json or as_csv):
        raise click.UsageError("--unit prints one unit's interval, --json/--csv the whole analysis: give one")
    only_with(not (as_json or as_csv or unit_text is not None), given_flags("every_node", "show_tags"),
              "the table (not with --json, --csv or --unit)")
    only_with(unit_text is not None or overlay_image is not None, given_flags("node"), "--unit or --overlay")
    only_with(bool(with_erf), given_flags("weights"), "--with-erf")
    only_with(any((export_path, plot_path, graph_path, out_image)), given_flags("force"),
              "an output file (--export-plan, --plot, --graph or --out-image)")
    if graph_path and Path(graph_path).suffix.lower() not in GRAPH_FORMATS:
        raise click.BadParameter("the file type comes from its name: use .graphml (GraphML) or .json (node-link "
                                 "JSON)", param_hint="--graph")
    reading = source_files(model)
    prepare_outputs({"--export-plan": export_path, "--plot": plot_path, "--graph": graph_path}, force, reading)
    if plot_path:
        pyplot()  # fail before the analysis when matplotlib is missing or the file type is unknown
        image_format(plot_path)
    wants_tags = show_tags or policy is not None or export_path or plot_path or graph_path
    unit = parse_unit(unit_text)
    if (unit is not None or overlay_image) and (node is None or unit is None):
        raise click.UsageError("--unit and --overlay need both --node NAME and --unit I,J")
    if overlay_image and not out_image or out_image and not overlay_image:
        raise click.UsageError("--overlay IMAGE and --out-image PNG go together")
    if (with_erf or weights) and not overlay_image:
        raise click.UsageError("--with-erf and --weights draw on an --overlay image")
    plan = analyze(model, input_size, strict=strict, leaf_modules=[import_module_class(spec) for spec in leaves],
                   num_classes=num_classes, capture=how)
    tags = tag(plan, policy_name, **options) if wants_tags else []
    if export_path:
        export_plan(plan, settings, schedule, bn, export_path, force)
    if plot_path:
        click.echo(f"wrote {plot_rf(plan, plot_path, tags, force=force)}", err=True)
    if graph_path:
        click.echo(f"wrote {write_graph(plan, graph_path, tags, force=force, reading=reading)}", err=True)
    if overlay_image:
        _overlay(model, plan, node, unit, overlay_image, out_image, with_erf, weights, force)
    if unit is not None:
        click.echo(describe_unit(plan, node, unit))
    elif as_json:
        click.echo(to_json(plan, every_node=not main_only))
    elif as_csv:
        click.echo(to_csv(plan, every_node=not main_only), nl=False)
    else:
        click.echo(to_table(plan, every_node=every_node, tags=tags))


def _overlay(model: str, plan, node: str, unit: tuple[int, ...], image: str, out: str, with_erf: bool,
             weights: str | None, force: bool) -> None:
    check_unit(find_layer(plan, node), unit)
    prepare_output(out, force=force, option="--out-image", reading=[image])
    heat = None
    if with_erf:
        x = normalise(read_image(image, plan.input_size[1:]), plan.input_size[0])[None]
        heat = erf(model, [node], inputs=x, input_size=plan.input_size, weights=weights, unit=unit).nodes[0]
    click.echo(f"wrote {draw_overlay(image, plan, node, unit, out, heat, force)}", err=True)
