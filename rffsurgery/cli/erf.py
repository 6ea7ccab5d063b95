"""``rffsurgery erf``: effective receptive fields as a table, heat maps and growth plots."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..analysis import analyze
from ..analysis.erf import default_node, erf, growth_nodes
from ..files import prepare_output, write_text
from ..reports.plot import plot_erf, plot_erf_growth
from .common import check_erf_inputs, erf_input_options, given_flags, only_with, parse_unit

__all__ = ["erf_command"]


@click.command("erf")
@click.argument("model")
@click.option("--nodes", "nodes", multiple=True, metavar="NAME[,NAME…]",
              help="Nodes or module paths (repeatable). Default: the last node with a local RF.")
@click.option("--unit", "unit_text", default=None, metavar="I,J", help="Output position. Default: each node's centre.")
@erf_input_options
@click.option("--input-size", "input_size", default=None, metavar="C,H,W", help="As for analyze.")
@click.option("--growth", is_flag=True, help="Also compute the ERF of the main layers (up to 24) and plot its growth.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write erf.json, erf-NODE.png heat maps (and growth.png) into this folder.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def erf_command(model: str, nodes: tuple[str, ...], unit_text: str | None, images: int, data: str,
                data_root: str | None, weights: str | None, seed: int, batch: int, input_size: str | None, growth: bool,
                out_dir: str | None, force: bool) -> None:
    """Effective receptive field of MODEL: the input gradient of a unit, aggregated over inputs.

    Prints, per node, the theoretical RF and the sides (and area ratios) of the
    smallest centred squares holding 20/30/50/99 % of the contribution; --out writes
    the heat maps with the theoretical RF drawn on them and the JSON.
    """
    names = [n.strip() for group in nodes for n in group.split(",") if n.strip()]
    check_erf_inputs(data)
    only_with(out_dir is not None, given_flags("force"), "--out")
    if growth and unit_text:
        raise click.UsageError("--growth measures each layer's centre unit; drop --unit (or --growth)")
    if not names or growth:
        shapes = analyze(model, input_size)  # on the meta device: which nodes, before building weights
        names = names or [default_node(shapes)]
    extra = growth_nodes(shapes) if growth else []
    out = Path(out_dir) if out_dir else None
    if out is not None:  # fail before the work when a rerun would replace the results
        prepare_output(out / "erf.json", force=force, option="--out", make_parents=True)
    result = erf(model, [*names, *extra], images=images, data=data, data_root=data_root, input_size=input_size,
                 weights=weights, unit=parse_unit(unit_text), seed=seed, batch=batch)
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
