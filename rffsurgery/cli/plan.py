"""``rffsurgery plan show|check``: validate a freeze plan, and check that it fits a model."""

from __future__ import annotations

import click

from ..models.zoo import resolve
from ..plan import FreezePlan
from .types import number

__all__ = ["plan_group"]


@click.group("plan")
def plan_group() -> None:
    """Inspect freeze plans."""


@plan_group.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the validated plan as JSON.")
def plan_show(path: str, as_json: bool) -> None:
    """Validate and pretty-print the freeze plan at PATH."""
    loaded = FreezePlan.load(path)
    click.echo(loaded.to_json() if as_json else loaded.describe())


@plan_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("model")
@click.option("--num-classes", type=number("num_classes"), default=None, metavar="N", help="Build MODEL with an N-class head.")
def plan_check(path: str, model: str, num_classes: int | None) -> None:
    """Check that the plan at PATH fits MODEL (parameter names, fingerprint of the graph up to the frozen layers)."""
    loaded = FreezePlan.load(path)
    spec = resolve(model)
    # torch.export runs the model to take its branches: that needs real weights
    network = spec.build("cpu", num_classes) if loaded.capture == "export" else spec.build_cheapest(num_classes)
    found = loaded.check(network)
    where = f" (the network at '{found}')" if found else ""
    click.echo(f"ok: {path} matches {model}{where} ({len(loaded.parameter_names)} parameters to freeze)")
