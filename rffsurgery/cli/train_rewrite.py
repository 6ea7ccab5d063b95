"""``rffsurgery train`` options for rewrites: ``--protocol rewrite`` and the rewrite options both protocols take.

With ``--protocol rff`` (the default) the rewrite options rewrite the model before the
RFF protocol runs on it; with ``--protocol rewrite`` they name the variants compared with
the original (:mod:`rffsurgery.train.rewrite_protocol`).  Options the rewrite protocol
has no use for are refused when given, and the options the user leaves at their
defaults take paper 002's setting (20 epochs, batch 128, ``p002-small-cnn``).
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import InvalidArgument
from ..reports.rewrite import format_table
from ..train.augment import Augment
from ..train.protocols.rewrite import RewriteConfig, run_rewrite_experiment
from .common import given_flags
from .types import number

__all__ = ["REWRITE_OPTIONS", "rewrite_options", "run_rewrite_protocol"]

REWRITE_OPTIONS = [
    click.option("--protocol", type=click.Choice(["rff", "rewrite"]), default="rff", show_default=True,
                 help="rff: the RFF experiment; rewrite: train the original and each rewrite, compare (paper 002)."),
    click.option("--meta-groups", type=number("meta_groups"), default=None, metavar="G",
                 help="Rewrite: FC head → G-way grouped FC + Meta (a variant with --protocol rewrite)."),
    click.option("--meta-out", type=number("meta_out"), default=None, metavar="M", help="Rewrite: Meta output groups (default G)."),
    click.option("--conv3d-filters", type=number("conv3d_filters"), default=None, metavar="S",
                 help="Rewrite: Conv2d → channel-sliding conv with S filters (a variant with --protocol rewrite)."),
    click.option("--conv3d-layers", multiple=True, metavar="GLOB",
                 help="Rewrite: which Conv2d to replace (default: all but the stem; repeatable)."),
    click.option("--combined", is_flag=True,
                 help="--protocol rewrite: also train the model with both rewrites applied."),
]

PAPER_DEFAULTS = {"epochs": 20, "batch_size": 128, "model": "p002-small-cnn"}
"""Paper 002's setting, used by --protocol rewrite where the user did not choose (Adam 1e-3 is the default)."""

RFF_ONLY = ("until_overfit", "max_epochs", "patience", "transfer_epochs", "finetune", "split", "base", "transfer",
            "plan", "policy", "select", "bn", "dropout", "stop_after", "cue", "probe", "probe_l2", "control",
            "memory_format")


def rewrite_options(o: dict[str, Any]) -> dict[str, Any] | None:
    """Keyword arguments of :func:`rffsurgery.surgery.rewrite` for the RFF protocol's model, or ``None``."""
    if o["combined"]:
        raise InvalidArgument("--combined applies to --protocol rewrite only")
    if o["meta_groups"] is None and o["conv3d_filters"] is None:
        if o["meta_out"] is not None or o["conv3d_layers"]:
            raise InvalidArgument("--meta-out needs --meta-groups and --conv3d-layers needs --conv3d-filters")
        return None
    return {"meta_groups": o["meta_groups"], "meta_out": o["meta_out"], "conv3d_filters": o["conv3d_filters"],
            "conv3d_layers": list(o["conv3d_layers"]) or None}


def run_rewrite_protocol(o: dict[str, Any], source: Any, seeds: list[int]) -> None:
    """Body of ``train --protocol rewrite``: refuse RFF-only options, fill paper defaults, run, print the table."""
    given = [f"--{k.replace('_', '-')}" for k in RFF_ONLY if given_flags(k)]
    if given:
        raise InvalidArgument(f"{', '.join(given)}: RFF-protocol option(s), not used by --protocol rewrite")
    settings = {k: (o[k] if given_flags(k) else v) for k, v in PAPER_DEFAULTS.items()}
    cfg = RewriteConfig(
        model=settings["model"], meta_groups=o["meta_groups"], meta_out=o["meta_out"],
        conv3d_filters=o["conv3d_filters"], conv3d_layers=tuple(o["conv3d_layers"]), combined=o["combined"],
        epochs=settings["epochs"], optimizer=o["optimizer"], batch_size=settings["batch_size"], lr=o["lr"],
        weight_decay=o["weight_decay"], l1=o["l1"], augment=Augment(o["flip"], o["rotation"], o["zoom"]),
        device=o["device"], amp=not o["no_amp"], deterministic=o["deterministic"], workers=o["workers"],
    )
    out = o["out"] if given_flags("out") else o["out"].parent / "rewrite"
    report = run_rewrite_experiment(cfg, source, seeds, out, resume=o["resume"], plots=not o["no_plots"],
                                    log=click.echo)
    click.echo(format_table(report))
    click.echo(f"report: {out / 'report.json'} and report.txt"
               + ("" if o["no_plots"] else ", plots: accuracy_vs_parameters.png, curves.png"))
