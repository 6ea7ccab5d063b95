"""``rffsurgery rewrite``: FC head → grouped FC + Meta, Conv2d → channel-sliding Conv3d, with checks."""

from __future__ import annotations

import click
import torch

from ..export import export_onnx, require_onnx
from ..files import prepare_output
from ..models.zoo import source_files
from ..reports.rewrite import format_report
from ..surgery import rewrite, save
from ..surgery.check import check
from ..surgery.recipe import check_save
from .common import given_flags, only_with
from .types import number

__all__ = ["rewrite_command"]


@click.command("rewrite")
@click.argument("model")
@click.option("--meta-groups", type=number("meta_groups"), default=None, metavar="G",
              help="Replace the head's large FC layer(s) with G-way grouped FC + Meta.")
@click.option("--meta-out", type=number("meta_out"), default=None, metavar="M", help="Meta output groups (default G).")
@click.option("--hidden", type=number("hidden"), default=None,
              help="Bottleneck width when the classifier itself is replaced (default K/4).")
@click.option("--head-layers", multiple=True, metavar="GLOB",
              help="Linear layers to replace instead of the detected head (module-path globs, repeatable).")
@click.option("--init-from-old", is_flag=True, help="Start the new head from the old weights; report its error.")
@click.option("--conv3d-filters", type=number("conv3d_filters"), default=None, metavar="S",
              help="Replace eligible Conv2d layers with channel-sliding Conv3d of S filters.")
@click.option("--conv3d-layers", multiple=True, metavar="GLOB",
              help="Conv2d layers to consider (module-path globs, repeatable; default: all but the stem).")
@click.option("--input-size", "input_size", default=None, metavar="SIZE", help="As for analyze.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write recipe.json + state_dict.pt into this directory.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Export to ONNX, run onnx.checker and compare onnxruntime with PyTorch.")
@click.option("--seed", type=number("seed"), default=0, show_default=True, help="Seed of the random weights.")
@click.option("--force", is_flag=True, help="Replace existing --out / --onnx files.")
def rewrite_command(model: str, meta_groups: int | None, meta_out: int | None, hidden: int | None,
            head_layers: tuple[str, ...], init_from_old: bool, conv3d_filters: int | None,
            conv3d_layers: tuple[str, ...], input_size: str | None, out_dir: str | None, onnx_path: str | None,
            seed: int, force: bool) -> None:
    """Rewrite MODEL to save parameters: FC head → grouped FC + Meta, Conv2d → Conv3d.

    Prints parameters and MACs before → after per replaced layer and in total, and
    checks that the new model traces, runs forward/backward and keeps its
    receptive fields.  Exits with 1 if a check fails.
    """
    only_with(meta_groups is not None, given_flags("meta_out", "hidden", "head_layers", "init_from_old"), "--meta-groups")
    only_with(conv3d_filters is not None, given_flags("conv3d_layers"), "--conv3d-filters")
    only_with(out_dir is not None or onnx_path is not None, given_flags("force"), "--out or --onnx")
    reading = source_files(model)
    if out_dir:
        check_save(out_dir, force=force, reading=reading)
    if onnx_path:
        require_onnx()
        prepare_output(onnx_path, force=force, option="--onnx", reading=reading)
    torch.manual_seed(seed)
    done = rewrite(model, input_size=input_size, meta_groups=meta_groups, meta_out=meta_out, hidden=hidden,
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
        click.get_current_context().exit(1)
