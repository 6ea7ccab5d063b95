"""``rffsurgery report``: the interactive HTML report of MODEL (layers, growth, units on your image, ERF, plan)."""

from __future__ import annotations

import click

from ..analysis import analyze
from ..analysis.erf import erf, growth_nodes
from ..models.zoo import import_module_class, source_files
from ..reports.html import html_report
from ..tags import tag
from .common import (
    ERF_INPUTS,
    analysis_options,
    check_erf_inputs,
    erf_input_options,
    export_plan,
    given_flags,
    only_with,
    plan_options,
    plan_schedule,
    policy_options,
    policy_settings,
    prepare_outputs,
    pytorch_only,
)

__all__ = ["report_command"]


@click.command("report")
@click.argument("model")
@analysis_options
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Draw the units on this image, resized and centre-cropped as the model sees it "
                   "(default: a neutral grid).")
@click.option("--erf", "with_erf", is_flag=True,
              help="Also measure the effective RF of the main layers (up to 24; their centre unit) and show it.")
@erf_input_options
@policy_options
@plan_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="The HTML file to write.")
@click.option("--force", is_flag=True, help="Replace existing output files (--out, --export-plan).")
def report_command(model: str, input_size: str | None, num_classes: int | None, strict: bool, leaves: tuple[str, ...],
                   how: str, image: str | None, with_erf: bool, images: int, data: str, data_root: str | None,
                   weights: str | None, seed: int, batch: int, policy: str | None, include_stem: bool,
                   include_shortcuts: bool, metric: str, top_k: int | None, threshold: float | None,
                   patterns: tuple[str, ...], export_path: str | None, epochs: str | None, every: int | None,
                   start: int, stop: int | None, bn: str, out_path: str, force: bool) -> None:
    """Write an interactive report of MODEL as one HTML file that opens offline in any browser.

    The layer table (sortable, filterable), the RF growth over depth with the tagged
    layers, and for a clicked layer its output grid on your image: hover a unit to see
    the exact input pixels it reads. --erf adds effective RF heat maps, --export-plan
    the freeze plan's schedule and fingerprint.
    """
    pytorch_only(model)
    settings = policy_settings(policy, include_stem, include_shortcuts, metric, top_k, threshold, patterns)
    schedule = plan_schedule(export_path, epochs, every, start, stop)
    only_with(with_erf, given_flags(*ERF_INPUTS), "--erf")
    check_erf_inputs(data)
    prepare_outputs({"--out": out_path, "--export-plan": export_path}, force,
                    [*source_files(model), *([image] if image else [])])  # fail before the work
    plan = analyze(model, input_size, strict=strict, leaf_modules=[import_module_class(spec) for spec in leaves],
                   num_classes=num_classes, capture=how)
    freeze_plan = export_plan(plan, settings, schedule, bn, export_path, force) if export_path else None
    measured = None
    if with_erf:
        measured = erf(model, growth_nodes(plan), images=images, data=data, data_root=data_root,
                       input_size=plan.input_size, weights=weights, seed=seed, batch=batch)
    path = html_report(plan, out_path, image=image, erf=measured, freeze_plan=freeze_plan,
                       tags=tag(plan, settings[0], **settings[1]), force=force)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): open it in a browser", err=True)
