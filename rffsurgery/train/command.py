"""Options and body of ``rffsurgery train`` (kept here so that ``cli.py`` stays a few lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from ..errors import InvalidArgument

__all__ = ["parse_seeds", "run_command", "train_options"]

_OPTIONS = [
    click.option("--model", default="rff-base-cnn", show_default=True,
                 help="Model (rff-base-cnn, resnet50, timm:…, pkg.mod:factory); its head is sized for the classes."),
    click.option("--data", "data", type=click.Choice(["generated", "cifar100", "folder", "fashion-mnist", "mnist"]),
                 default="generated", show_default=True,
                 help="Built-in generated shapes, CIFAR-100 (torchvision layout), an ImageFolder tree, or "
                      "Fashion-MNIST / MNIST IDX files (grey → 3 channels, 28×28 zero-padded to the base CNN's 32, "
                      "resized for other models; validation on the official test images)."),
    click.option("--data-root", type=click.Path(path_type=Path),
                 help="Folder holding cifar-100-python/, the ImageFolder root, or the IDX files "
                      "(flat, e.g. /usr/share/datasets/fashion-mnist, or torchvision's FashionMNIST/raw/)."),
    click.option("--download", is_flag=True,
                 help="Download CIFAR-100 into --data-root if it is missing (needs internet)."),
    click.option("--split", "split", default=None,
                 help="Split name(s): 1.1 … 1.10 (CIFAR-100), g.1/g.2 (generated), shirt-pullover, shirt-coat, "
                      "sandal-sneaker, trouser-bag, t-shirt-dress (Fashion-MNIST), a comma list, 'all', or "
                      "'random:K' (K distinct seeded random splits with the source's base/transfer sizes)."),
    click.option("--base", default=None,
                 help="Comma-separated base class names (a custom split; needs --transfer)."),
    click.option("--transfer", default=None, help="Comma-separated transfer class names (a custom split)."),
    click.option("--seeds", default="0", show_default=True, help="Seeds: '0,1,2' or a range '0-4'."),
    click.option("--epochs", default=4, show_default=True, help="Experiment 1: base epochs n (branch at epoch n+1)."),
    click.option("--until-overfit", is_flag=True,
                 help="Experiment 2: n = epoch of lowest validation loss once --patience epochs fail to lower it."),
    click.option("--max-epochs", default=30, show_default=True, help="Cap on base epochs with --until-overfit."),
    click.option("--patience", default=2, show_default=True, help="Epochs without a new validation-loss minimum."),
    click.option("--transfer-epochs", default=50, show_default=True,
                 help="Epochs of the transfer step (cheap: with a fixed extractor the features are computed once)."),
    click.option("--finetune", is_flag=True, help="Transfer by training every weight instead of only the new head."),
    click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True),
    click.option("--batch-size", default=64, show_default=True),
    click.option("--lr", default=1e-3, show_default=True),
    click.option("--weight-decay", default=0.0, show_default=True, help="L2 penalty (the optimizer's weight decay)."),
    click.option("--l1", default=0.0, show_default=True, help="L1 penalty on weight tensors."),
    click.option("--dropout", default=0.0, show_default=True, help="Dropout probability before the output layer."),
    click.option("--flip", is_flag=True, help="Augment: random horizontal flips."),
    click.option("--rotation", default=0.0, show_default=True, help="Augment: random rotation up to ± degrees."),
    click.option("--zoom", default=0.0, show_default=True, help="Augment: random zoom in [1-z, 1+z]."),
    click.option("--per-class", default=None, type=int,
                 help="Training images per class: generated data (default 250), or a seeded subsample of "
                      "(Fashion-)MNIST (default all 6000; the paper's CIFAR-100 has 500)."),
    click.option("--probe", type=click.Choice(["lbfgs", "sgd"]), default=None,
                 help="Transfer metric: L2 logistic regression fit to convergence on frozen features (default), "
                      "or the SGD-trained head's last epoch (the paper's; default with --finetune)."),
    click.option("--probe-l2", default=1e-3, show_default=True,
                 help="L2 strength λ of the L-BFGS probe (on standardised features)."),
    click.option("--control", is_flag=True,
                 help="Add a placebo model 2' (branch epoch trained normally in another data order): the noise floor."),
    click.option("--cue", default=0.0, show_default=True,
                 help="Generated data: strength (0…1) of the class cue drawn on base training images."),
    click.option("--image-size", default=None, type=int, help="Folder data: side in pixels (default: the model's)."),
    click.option("--plan", "plan", type=click.Path(path_type=Path),
                 help="Freeze plan JSON (default: made from the model)."),
    click.option("--policy", default="paper", show_default=True, help="Tagging policy when no --plan is given."),
    click.option("--bn", type=click.Choice(["train", "freeze-affine", "freeze"]), default="train", show_default=True,
                 help="BatchNorm handling in the RFF epoch when no --plan is given."),
    click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps."),
    click.option("--no-amp", is_flag=True, help="Disable mixed precision on GPU."),
    click.option("--deterministic", is_flag=True, help="Deterministic GPU kernels (exact --resume on GPU)."),
    click.option("--workers", default=2, show_default=True, help="DataLoader workers for folder data."),
    click.option("--threads", default=None, type=int, help="CPU threads for torch (default: torch's choice)."),
    click.option("--out", type=click.Path(path_type=Path), default=Path("runs/rff"), show_default=True,
                 help="Output folder: checkpoints, logs, plots and the report."),
    click.option("--resume", is_flag=True, help="Continue interrupted runs from their checkpoints."),
    click.option("--stop-after", type=click.Choice(["base", "branch"]), default=None,
                 help="Stop every run after this stage (continue later with --resume)."),
    click.option("--no-plots", is_flag=True, help="Skip the PNG plots."),
]


def train_options(fn: Callable) -> Callable:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix, e.g. ``"0-2,7"``."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, sep, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
    except ValueError:
        raise ValueError(f"--seeds must look like '0,1,2' or '0-4', got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must name distinct seeds, got {text!r}")
    return seeds


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _source(o: dict[str, Any]):
    from ..zoo import resolve
    from . import GeneratedSource, cifar100, image_folder

    if o["data"] == "generated":
        return GeneratedSource(per_class=o["per_class"] or 250, cue=o["cue"])
    if o["data_root"] is None:
        raise ValueError(f"--data {o['data']} needs --data-root")
    if o["data"] in ("fashion-mnist", "mnist"):
        from .mnist import mnist_source

        return mnist_source(o["data"], o["data_root"], o["image_size"] or resolve(o["model"]).input_size[-1],
                            o["per_class"])
    if o["per_class"] is not None:
        raise InvalidArgument(f"--per-class applies to generated and (Fashion-)MNIST data, not --data {o['data']}")
    if o["data"] == "cifar100":
        return cifar100(o["data_root"], download=o["download"])
    return image_folder(o["data_root"], o["image_size"] or resolve(o["model"]).input_size[-1])


def run_command(**o: Any) -> None:
    """Build the source, splits and config from the options, run, and print the report table."""
    import torch

    from . import Augment, ProtocolConfig, Split, random_splits, resolve_splits, run_experiment
    from .report import format_table

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    source = _source(o)
    if o["base"] or o["transfer"]:
        if not (o["base"] and o["transfer"]):
            raise ValueError("a custom split needs both --base and --transfer")
        splits = [Split(o["split"] or "custom", _names(o["base"]), _names(o["transfer"]))]
    elif (o["split"] or "").startswith("random:"):
        count = o["split"].partition(":")[2]
        if not count.isdigit():
            raise InvalidArgument(f"--split random:K needs a whole number K, got {o['split']!r}")
        first = next(iter(source.splits.values()), None)  # the source's natural sizes; 8/2 if it has no splits
        sizes = (len(first.base), len(first.transfer)) if first else (8, 2)
        splits = random_splits(source.classes, int(count), *sizes)
    elif not source.splits:
        raise ValueError(f"{source.name} has no built-in splits: name the classes with --base and --transfer")
    else:
        splits = resolve_splits(o["split"] or next(iter(source.splits)), source.splits)
    cfg = ProtocolConfig(
        model=o["model"], epochs=o["epochs"], until_overfit=o["until_overfit"], max_epochs=o["max_epochs"],
        patience=o["patience"], transfer_epochs=o["transfer_epochs"], finetune=o["finetune"],
        optimizer=o["optimizer"], batch_size=o["batch_size"], lr=o["lr"], weight_decay=o["weight_decay"],
        l1=o["l1"], dropout=o["dropout"], augment=Augment(o["flip"], o["rotation"], o["zoom"]),
        plan=str(o["plan"]) if o["plan"] else None, policy=o["policy"], bn=o["bn"], device=o["device"],
        amp=not o["no_amp"], deterministic=o["deterministic"], workers=o["workers"], probe=o["probe"],
        probe_l2=o["probe_l2"], control=o["control"],
    )
    if getattr(source, "note", None):
        click.echo(source.note)
    report = run_experiment(cfg, source, splits, parse_seeds(o["seeds"]), o["out"], resume=o["resume"],
                            stop_after=o["stop_after"], plots=not o["no_plots"], log=click.echo)
    if report is None:
        click.echo(f"stopped after the {o['stop_after']} stage; continue with --resume (checkpoints in {o['out']})")
        return
    click.echo(format_table(report))
    click.echo(f"report: {o['out'] / 'report.json'} and report.txt" + ("" if o["no_plots"] else ", plots: deltas.png"))
