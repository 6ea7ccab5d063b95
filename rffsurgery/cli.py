"""The ``rffsurgery`` command line: a thin layer over the Python API."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rffsurgery")
def main() -> None:
    """Graph-level surgery on PyTorch models: exact receptive fields, freeze plans, rewrites."""


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@main.command()
@click.argument("model")
@click.option("--input-size", "input_size", default=None, metavar="C,H,W",
              help="Input size: 224, 224x192 or 3,224,224. Default: the model's own, else 3,224,224.")
@click.option("--all", "every_node", is_flag=True, help="Show every node, not only the main layers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every node unless --main).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (every node unless --main).")
@click.option("--main", "main_only", is_flag=True, help="With --json/--csv: only the main layers.")
@click.option("--strict", is_flag=True, help="Fail if an op has no geometry rule instead of reporting it.")
def analyze(model: str, input_size: str | None, every_node: bool, as_json: bool, as_csv: bool, main_only: bool,
            strict: bool) -> None:
    """Receptive field (RF), effective stride and padding of every layer of MODEL.

    MODEL is a torchvision or timm name (resnet50, timm:convnext_tiny), a built-in
    (rff-base-cnn) or user code (package.module:factory, file.py:factory).
    No weights are downloaded.
    """
    from .analysis import UnknownOpError, analyze as run
    from .report import to_csv, to_json, to_table
    from .trace import TraceError
    from .zoo import ModelNotFound

    try:
        plan = run(model, input_size, strict=strict)
    except (ModelNotFound, TraceError, UnknownOpError, ValueError) as exc:
        _fail(exc)
    if as_json:
        click.echo(to_json(plan, every_node=not main_only))
    elif as_csv:
        click.echo(to_csv(plan, every_node=not main_only), nl=False)
    else:
        click.echo(to_table(plan, every_node=every_node))
