"""``rffsurgery train``: the RFF protocol (or, with ``--protocol rewrite``, paper 002's experiment) from the command line."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click
import torch
from click.core import ParameterSource

from ..data import DATASETS, Source, open_dataset, option_users
from ..data import OPTIONS as DATA_OPTIONS
from ..data.splits import Split, random_splits, resolve_splits
from ..errors import InvalidArgument
from ..files import check_folder
from ..limits import LIMITS, check
from ..plan import FreezePlan
from ..reports.training import format_table
from ..train.augment import Augment
from ..train.model import model_input_size
from ..train.protocols.experiment import run_experiment
from ..train.protocols.rff import ProtocolConfig
from .common import given_flags, only_with, option_group
from .train_rewrite import REWRITE_OPTIONS, rewrite_options, run_rewrite_protocol
from .types import number

__all__ = ["parse_seeds", "run_command", "train_command", "train_options"]

_OPTIONS = [
    click.option("--model", default="rff-base-cnn", show_default=True,
                 help="Model (rff-base-cnn, resnet50, timm:…, pkg.mod:factory) or a 'rffsurgery rewrite --out' "
                      "folder; its head is sized for the classes."),
    click.option("--data", "data", type=click.Choice(list(DATASETS)),
                 default="generated", show_default=True,
                 help="Built-in generated shapes, CIFAR-100 / CIFAR-10 (torchvision layout), an ImageFolder tree, or "
                      "Fashion-MNIST / MNIST IDX files (grey → 3 channels, 28×28 zero-padded to the base CNN's 32, "
                      "resized for other models; validation on the official test images)."),
    click.option("--data-root", type=click.Path(path_type=Path),
                 help="Folder holding cifar-100-python/ or cifar-10-batches-py/, the ImageFolder root, or the IDX "
                      "files (flat, e.g. /usr/share/datasets/fashion-mnist, or torchvision's FashionMNIST/raw/)."),
    click.option("--download", is_flag=True,
                 help="Download CIFAR-100 / CIFAR-10 into --data-root if it is missing (needs internet)."),
    click.option("--split", "split", default=None,
                 help="Split name(s): 1.1 … 1.10 (CIFAR-100; 2.1 … 2.10 are experiment 2 and imply "
                      "--until-overfit), g.1/g.2 (generated), shirt-pullover, shirt-coat, sandal-sneaker, "
                      "trouser-bag, t-shirt-dress (Fashion-MNIST), a comma list, 'all', or 'random:K' (K distinct "
                      "seeded random splits with the source's base/transfer sizes)."),
    click.option("--base", default=None,
                 help="Comma-separated base class names (a custom split; needs --transfer)."),
    click.option("--transfer", default=None, help="Comma-separated transfer class names (a custom split)."),
    click.option("--seeds", default="0", show_default=True, help="Seeds: '0,1,2' or a range '0-4'."),
    click.option("--epochs", type=number("epochs"), default=4, show_default=True, help="Experiment 1: base epochs n (branch at epoch n+1)."),
    click.option("--until-overfit", is_flag=True,
                 help="Experiment 2: n = epoch of lowest validation loss once --patience epochs fail to lower it."),
    click.option("--max-epochs", type=number("max_epochs"), default=30, show_default=True, help="Cap on base epochs with --until-overfit."),
    click.option("--patience", type=number("patience"), default=2, show_default=True, help="Epochs without a new validation-loss minimum."),
    click.option("--transfer-epochs", type=number("transfer_epochs"), default=50, show_default=True,
                 help="Epochs of the transfer step (cheap: with a fixed extractor the features are computed once)."),
    click.option("--finetune", is_flag=True, help="Transfer by training every weight instead of only the new head."),
    click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True),
    click.option("--batch-size", type=number("batch_size"), default=64, show_default=True),
    click.option("--lr", type=number("lr"), default=1e-3, show_default=True),
    click.option("--weight-decay", type=number("weight_decay"), default=0.0, show_default=True, help="L2 penalty (the optimizer's weight decay)."),
    click.option("--l1", type=number("l1"), default=0.0, show_default=True, help="L1 penalty on weight tensors."),
    click.option("--dropout", type=number("dropout"), default=0.0, show_default=True, help="Dropout probability before the output layer."),
    click.option("--flip", is_flag=True, help="Augment: random horizontal flips."),
    click.option("--rotation", type=number("rotation"), default=0.0, show_default=True, help="Augment: random rotation up to ± degrees."),
    click.option("--zoom", type=number("zoom"), default=0.0, show_default=True, help="Augment: random zoom in [1-z, 1+z]."),
    click.option("--per-class", default=None, type=number("per_class"),
                 help="Training images per class: generated data (default 250), or a seeded subsample of "
                      "(Fashion-)MNIST (default all 6000; the paper's CIFAR-100 has 500)."),
    click.option("--probe", type=click.Choice(["lbfgs", "sgd"]), default=None,
                 help="Transfer metric: L2 logistic regression fit to convergence on frozen features (default), "
                      "or the SGD-trained head's last epoch (the paper's; default with --finetune)."),
    click.option("--probe-l2", type=number("probe_l2"), default=1e-3, show_default=True,
                 help="L2 strength λ of the L-BFGS probe (on standardised features)."),
    click.option("--control", type=click.Choice(["aa", "placebo", "both"]), is_flag=False, flag_value="aa",
                 default=None,
                 help="Control arms of the branch epoch: aa (trained normally in another data order: the noise "
                      "floor; a bare --control means aa, as before), placebo (as many other, non-RF-expanding layers "
                      "frozen, parameter count matched), or both."),
    click.option("--cue", type=number("cue"), default=0.0, show_default=True,
                 help="Generated data: strength (0…1) of the class cue drawn on base training images."),
    click.option("--image-size", default=None, type=number("image_size"), help="Folder data: side in pixels (default: the model's)."),
    click.option("--plan", "plan", type=click.Path(path_type=Path),
                 help="Freeze plan JSON (default: made from the model)."),
    click.option("--policy", default="paper", show_default=True, help="Tagging policy when no --plan is given."),
    click.option("--select", "select", multiple=True, metavar="GLOB",
                 help="--policy names: node names or glob patterns to freeze (repeatable)."),
    click.option("--bn", type=click.Choice(["train", "freeze-affine", "freeze"]), default="train", show_default=True,
                 help="BatchNorm handling in the RFF epoch when no --plan is given."),
    click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps."),
    click.option("--no-amp", is_flag=True, help="Disable mixed precision on GPU."),
    click.option("--memory-format", type=click.Choice(["auto", "channels-last", "contiguous"]), default="auto",
                 show_default=True,
                 help="auto: channels_last on CUDA/CPU unless the model has 5-D weights (Conv3d), then contiguous."),
    click.option("--deterministic", is_flag=True, help="Deterministic GPU kernels (exact --resume on GPU)."),
    click.option("--workers", default=2, show_default=True, type=number("workers"), help="DataLoader workers for folder data."),
    click.option("--threads", default=None, type=number("threads"), help="CPU threads for torch (default: torch's choice)."),
    click.option("--out", type=click.Path(path_type=Path), default=Path("runs/rff"), show_default=True,
                 help="Output folder: checkpoints, logs, plots and the report."),
    click.option("--resume", is_flag=True, help="Continue interrupted runs from their checkpoints."),
    click.option("--stop-after", type=click.Choice(["base", "branch"]), default=None,
                 help="Stop every run after this stage (continue later with --resume)."),
    click.option("--no-plots", is_flag=True, help="Skip the PNG plots."),
]


train_options = option_group(*_OPTIONS, *REWRITE_OPTIONS)
"""Every option of ``train``: the RFF protocol's and the rewrite options."""


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix, e.g. ``"0-2,7"``."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise InvalidArgument(f"--seeds must look like '0,1,2' or '0-4', got {text!r}") from None
        check("seed", first, label="--seeds")
        check("seed", last, label="--seeds")
        if last < first:
            raise InvalidArgument(f"--seeds range '{part}' is empty: write it low-high, e.g. '0-4'")
        check("seed_count", len(seeds) + last - first + 1, label="the number of --seeds")  # before it is built
        seeds += range(first, last + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidArgument(f"--seeds must name distinct seeds, got {text!r}")
    return seeds


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _source(o: dict[str, Any]) -> Source:
    """The dataset of ``--data`` from the registry; its options, and only its options, are passed on."""
    for name in ("data_root", "workers", *DATA_OPTIONS):
        users = option_users(name)
        if o["data"] not in users and given_flags(name):
            raise click.UsageError(f"{given_flags(name)[0]} only applies with --data {' or '.join(users)}")
    entry = DATASETS[o["data"]]
    options = {k: o[k] for k in entry.options}
    if "image_size" in entry.options and options["image_size"] is None:
        options["image_size"] = model_input_size(o["model"])[-1]
    return open_dataset(o["data"], o["data_root"] if entry.root else None, **options)


def _experiment_2(o: dict[str, Any], splits: list) -> bool:
    """``--until-overfit``, implied by split names 2.x (experiment 2); a mix of 1.x and 2.x is refused."""
    second = {s.name for s in splits if s.name.startswith("2.")}
    first = {s.name for s in splits if s.name.startswith("1.")}
    if second and first:
        raise InvalidArgument(f"--split mixes experiment 1 ({', '.join(sorted(first))}) and experiment 2 "
                              f"({', '.join(sorted(second))}), which differ in how n is chosen: run them separately")
    if second and not o["until_overfit"]:
        click.echo(f"note: split(s) {', '.join(sorted(second))} are experiment 2: training until the onset of "
                   "overfitting (--until-overfit)", err=True)
    return o["until_overfit"] or bool(second)


def _main_process() -> bool:
    """Whether this is the process that talks (rank 0 under torchrun, which sets RANK)."""
    return os.environ.get("RANK", "0") in ("", "0")


def resume_command() -> str:
    """The command line that continues this run: the options given (not the defaults) plus ``--resume``."""
    ctx = click.get_current_context()
    words = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words += [flag] if value else []
        else:
            words += [w for v in (value if param.multiple else [value]) for w in (flag, str(v))]
    if "--resume" not in words:
        words.append("--resume")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    launcher = ["torchrun", "--nproc_per_node", os.environ.get("LOCAL_WORLD_SIZE", str(world)), "-m", "rffsurgery"] \
        if world > 1 else ["rffsurgery"]
    return shlex.join(launcher + ctx.command_path.split()[1:] + words)


def run_command(**o: Any) -> None:
    """Build the source, splits and config from the options, run, and print the report table."""
    check_folder(o["out"], option="--out")  # before any data is loaded: a file or read-only place fails now
    if o["threads"] is not None:
        torch.set_num_threads(o["threads"])
    if o["plan"]:
        if o["policy"] != "paper" or o["bn"] != "train":
            raise InvalidArgument("--policy and --bn make a plan when none is given; with --plan they come from the file")
        FreezePlan.load(o["plan"])  # a broken file fails now, not after the data are loaded
    source = _source(o)
    if o["protocol"] == "rewrite":
        return run_rewrite_protocol(o, source, parse_seeds(o["seeds"]))
    if o["base"] or o["transfer"]:
        if not (o["base"] and o["transfer"]):
            raise InvalidArgument("a custom split needs both --base and --transfer")
        splits = [Split(o["split"] or "custom", _names(o["base"]), _names(o["transfer"]))]
    elif (o["split"] or "").startswith("random:"):
        count = o["split"].partition(":")[2]
        if not (count.isascii() and count.isdigit()) or len(count) > 18:
            raise InvalidArgument(f"--split random:K needs a whole number K from 1 to "
                                  f"{LIMITS['random_splits'].high:,}, got '{o['split']}'")
        check("random_splits", int(count), label="K of --split random:K")
        first = next(iter(source.splits.values()), None)  # the source's natural sizes; 8/2 if it has no splits
        sizes = (len(first.base), len(first.transfer)) if first else (8, 2)
        splits = random_splits(source.classes, int(count), *sizes)
    elif not source.splits:
        raise InvalidArgument(f"{source.name} has no built-in splits: name the classes with --base and --transfer")
    else:
        splits = resolve_splits(o["split"] or next(iter(source.splits)), source.splits)
    experiment_2 = _experiment_2(o, splits)
    only_with(experiment_2, given_flags("max_epochs", "patience"), "--until-overfit (or a split 2.x)")
    only_with(not experiment_2, given_flags("epochs"), "experiment 1 (with --until-overfit n is found while training)")
    cfg = ProtocolConfig(
        model=o["model"], epochs=o["epochs"], until_overfit=experiment_2, max_epochs=o["max_epochs"],
        patience=o["patience"], transfer_epochs=o["transfer_epochs"], finetune=o["finetune"],
        optimizer=o["optimizer"], batch_size=o["batch_size"], lr=o["lr"], weight_decay=o["weight_decay"],
        l1=o["l1"], dropout=o["dropout"], augment=Augment(o["flip"], o["rotation"], o["zoom"]),
        plan=str(o["plan"]) if o["plan"] else None, policy=o["policy"], select=tuple(o["select"]), bn=o["bn"],
        device=o["device"], amp=not o["no_amp"], deterministic=o["deterministic"], workers=o["workers"],
        memory_format=o["memory_format"], rewrite=rewrite_options(o), probe=o["probe"],
        probe_l2=o["probe_l2"], control=o["control"],
    )
    only_with(cfg.probe == "lbfgs", given_flags("probe_l2"), "--probe lbfgs (the default without --finetune)")
    if getattr(source, "note", None) and _main_process():
        click.echo(source.note)
    try:
        report = run_experiment(cfg, source, splits, parse_seeds(o["seeds"]), o["out"], resume=o["resume"],
                                stop_after=o["stop_after"], plots=not o["no_plots"], log=click.echo)
    except KeyboardInterrupt:
        if _main_process():
            click.echo(f"\ninterrupted: the last checkpoint in {o['out']} is safe (checkpoints are replaced "
                       f"atomically); continue with:\n  {resume_command()}", err=True)
        click.get_current_context().exit(130)
    if not _main_process():
        return
    if report is None:
        click.echo(f"stopped after the {o['stop_after']} stage; continue with --resume (checkpoints in {o['out']})")
        return
    click.echo(format_table(report))
    click.echo(f"report: {o['out'] / 'report.json'} and report.txt" + ("" if o["no_plots"] else ", plots: deltas.png"))


@click.command("train")
@train_options
def train_command(**options) -> None:
    """Run the RFF protocol: base training, branch (normal vs RFF epoch), transfer, delta with 95% CI.

    Defaults run offline on the built-in generated dataset; --data cifar100 --split all
    reproduces the paper's experiments 1.1–1.10 (add --until-overfit for 2.1–2.10).
    --meta-groups / --conv3d-filters run it on the rewritten model; --protocol rewrite
    instead trains the original and each rewrite and compares them (paper 002).
    """
    run_command(**options)
