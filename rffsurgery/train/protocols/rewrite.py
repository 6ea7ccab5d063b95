"""The rewrite experiment of paper 002 (docs/rewrites.md): what a parameter-saving rewrite costs in accuracy.

For every seed, the original model and each requested rewrite (*variants*) train from
scratch on the same data with the same settings: the same initial weights for every
layer a rewrite leaves alone (each variant is built from the same seeded model, then
rewritten), the same batch order, augmentation and dropout masks in every epoch (each
epoch is seeded from ``(seed, epoch)`` only).  After each epoch the model is evaluated
on the evaluation set and on a **selection set**, ``selection`` (10 %) of every class's
training images held out (seeded) and never trained on.  A run reports its **final**
accuracy (last epoch) and its **selected** accuracy: the evaluation accuracy at the epoch
with the highest selection-set accuracy.  (Paper 002 reported the best evaluation
accuracy of any epoch, which chooses the epoch on the evaluation set itself and is
optimistic; it is not reported.)  Also: its parameters, its MACs per sample (the counter of
:mod:`rffsurgery.surgery.report`) and the median seconds per epoch (one measurement per
epoch, variants run one after the other: a noisy figure on a shared machine).  Per
variant the report gives the paired differences against the original over the seeds
with 95 % t-intervals (:mod:`rffsurgery.train.protocols.stats`).

Variants: ``original``; ``meta`` (``meta_groups``/``meta_out``: the FC head → grouped FC +
Meta); ``conv3d`` (``conv3d_filters``/``conv3d_layers``: Conv2d → channel-sliding conv);
``meta+conv3d`` only when ``combined`` is set and both rewrites are given, because the
combination answers a different question (do the savings add up?) at the cost of
another full training.

Data (:func:`classification_data`): all classes of the source.  A source with an
official test set (``train_test(seed)``: CIFAR-10, Fashion-MNIST, MNIST) is evaluated on it; any other
source (the generated shapes, CIFAR-100, an ImageFolder tree) trains on the 80 % and is
evaluated on the 20 % it holds out of every class, as in the RFF protocol.

Paper 002's setting is the default: 20 epochs, Adam 1e-3, batch 128, no augmentation.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ...analysis.macs import count_params, macs
from ...data.base import ImageFiles, Images, ImageTensors, Source, data_settings, holdout, input_size_of
from ...data.splits import Split
from ...errors import InvalidArgument
from ...files import write_text
from ...limits import check_fields
from ...models.builtin import BUILTIN
from ...reports.rewrite import write_report
from ...seeding import derive_seed, seed_everything
from ...surgery import rewrite
from ...usercode import FORWARD_FIX, user_code
from ..augment import Augment
from ..checkpoint import CheckpointError, refuse_changes
from ..device import select_device
from ..logs import log_row, write_logs
from ..loop import evaluate, make_batches, train_epoch
from ..model import build_model
from .stats import summarize

__all__ = ["RewriteConfig", "classification_data", "run_rewrite_experiment"]

ORIGINAL = "original"

@dataclass(frozen=True)
class RewriteConfig:
    """The model, the rewrites to compare with it, and the training settings (paper 002's by default)."""

    model: str = "p002-small-cnn"
    meta_groups: int | None = None
    meta_out: int | None = None
    conv3d_filters: int | None = None
    conv3d_layers: tuple[str, ...] = ()
    combined: bool = False
    epochs: int = 20
    optimizer: str = "adam"
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    l1: float = 0.0
    augment: Augment = field(default_factory=Augment)
    holdout: float = 0.2
    selection: float = 0.1
    device: str = "auto"
    amp: bool = True
    deterministic: bool = False
    workers: int = 2

    def __post_init__(self) -> None:
        if self.meta_groups is None and self.conv3d_filters is None:
            raise InvalidArgument("the rewrite protocol needs a rewrite to compare with the original: "
                                  "give --meta-groups G and/or --conv3d-filters s")
        if self.meta_out is not None and self.meta_groups is None:
            raise InvalidArgument("--meta-out needs --meta-groups")
        if self.conv3d_layers and self.conv3d_filters is None:
            raise InvalidArgument("--conv3d-layers needs --conv3d-filters")
        if self.combined and (self.meta_groups is None or self.conv3d_filters is None):
            raise InvalidArgument("--combined needs both --meta-groups and --conv3d-filters")
        check_fields(self)
        if self.optimizer not in ("adam", "sgd"):
            raise InvalidArgument(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def variants(self) -> dict[str, dict[str, Any]]:
        """Variant name → keyword arguments of :func:`rffsurgery.surgery.rewrite` (none for the original)."""
        meta = {"meta_groups": self.meta_groups, "meta_out": self.meta_out}
        conv = {"conv3d_filters": self.conv3d_filters, "conv3d_layers": self.conv3d_layers or None}
        out: dict[str, dict[str, Any]] = {ORIGINAL: {}}
        if self.meta_groups is not None:
            out["meta"] = meta
        if self.conv3d_filters is not None:
            out["conv3d"] = conv
        if self.combined:
            out["meta+conv3d"] = {**meta, **conv}
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with its finished results (not the device or worker count)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "workers")}


# -- data -------------------------------------------------------------------------------------
def _concat(a: Images, b: Images) -> Images:
    """``a`` then ``b`` as one set; ``b``'s labels follow ``a``'s classes."""
    labels = torch.cat([a.labels, b.labels + len(a.classes)])
    classes = a.classes + b.classes
    if isinstance(a, ImageTensors) and isinstance(b, ImageTensors):
        return ImageTensors(torch.cat([a.images, b.images]), labels, classes)
    if isinstance(a, ImageFiles) and isinstance(b, ImageFiles):
        return ImageFiles(a.paths + b.paths, labels, classes, a.image_size)
    raise TypeError(f"cannot join {type(a).__name__} and {type(b).__name__}")


def classification_data(source: Source, seed: int, fraction: float = 0.2) -> tuple[Images, Images, str]:
    """Training set, evaluation set (all classes) and what the evaluation set is ("test" / "held-out").

    Sources without ``train_test()`` are asked for one RFF split whose base and transfer
    halves together cover every class; each half's training and hold-out parts are joined.
    """
    if hasattr(source, "train_test"):
        train, test = source.train_test(seed)
        return train, test, "test"
    classes = tuple(source.classes)
    if len(classes) < 3:
        raise InvalidArgument(f"{source.name} has {len(classes)} classes; the rewrite protocol needs at least 3")
    half = len(classes) // 2
    data = source.protocol_data(Split("all", classes[:half], classes[half:]), seed, fraction)
    return (_concat(data.base_train, data.transfer_train), _concat(data.base_val, data.transfer_val),
            f"held-out {fraction:.0%}")


# -- models -----------------------------------------------------------------------------------
def build(name: str, num_classes: int, input_size: tuple[int, ...]) -> nn.Module:
    """A built-in model sized for the data (channels, side, classes), or any zoo model with its head resized."""
    if name in BUILTIN:
        return BUILTIN[name][0](num_classes=num_classes, in_channels=input_size[0], image_size=input_size[-1])
    return build_model(name, num_classes)[0]


def make_variant(cfg: RewriteConfig, options: dict[str, Any], num_classes: int, input_size: tuple[int, ...],
                 seed: int) -> nn.Module:
    """The seeded original, rewritten by ``options``: untouched layers start identical in every variant."""
    seed_everything(seed, "init")
    model = build(cfg.model, num_classes, input_size)
    if not options:
        return model
    return rewrite(model, input_size=input_size, **options).after


# -- one run ----------------------------------------------------------------------------------
def _optimizer(cfg: RewriteConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_variant(cfg: RewriteConfig, name: str, model: nn.Module, train: Images, select: Images, test: Images,
                  seed: int, workdir: Path) -> dict[str, Any]:
    """Train one variant for ``cfg.epochs``, evaluating on ``select`` and ``test`` after each epoch; logs go to
    ``workdir`` (the ``val_*`` columns are the evaluation set's)."""

    size = input_size_of(train)
    result: dict[str, Any] = {"variant": name, "seed": seed, "parameters": count_params(model),
                              "macs": macs(model, size)[""]}
    runtime = select_device(cfg.device, cfg.amp, deterministic=cfg.deterministic)
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_b = make_batches(train, runtime, cfg.batch_size, cfg.workers)
    test_b = make_batches(test, runtime, max(cfg.batch_size, 256), cfg.workers)
    select_b = make_batches(select, runtime, max(cfg.batch_size, 256), cfg.workers)
    optimizer = _optimizer(cfg, model)
    history: list[dict[str, Any]] = []
    selection: list[float] = []
    for epoch in range(1, cfg.epochs + 1):
        stats = train_epoch(model, train_b, optimizer, runtime, derive_seed(seed, "epoch", epoch), cfg.augment,
                            cfg.l1, desc=f"{name} seed {seed} epoch {epoch}")
        history.append(log_row("train", name, epoch, stats, evaluate(model, test_b, runtime)))
        selection.append(evaluate(model, select_b, runtime)[1])
        write_logs(workdir, history)
    chosen = max(range(len(selection)), key=selection.__getitem__)  # the first of equals
    result.update(selected_accuracy=history[chosen]["val_accuracy"], selected_epoch=chosen + 1,
                  selection_accuracy=selection, final_accuracy=history[-1]["val_accuracy"],
                  final_loss=history[-1]["val_loss"], epoch_seconds=statistics.median(r["seconds"] for r in history),
                  device=runtime.describe(), history=history)
    return result


# -- the experiment ---------------------------------------------------------------------------
def _paired(results: Sequence[dict[str, Any]], variant: str, key: str) -> list[float]:
    original = {r["seed"]: r[key] for r in results if r["variant"] == ORIGINAL}
    return [r[key] - original[r["seed"]] for r in results if r["variant"] == variant and r["seed"] in original]


def aggregate(results: Sequence[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Per variant: parameters, MACs, mean accuracies and epoch time, and the differences from the original."""
    out = {}
    for name in variants:
        runs = [r for r in results if r["variant"] == name]
        entry: dict[str, Any] = {
            "parameters": runs[0]["parameters"], "macs": runs[0]["macs"], "seeds": [r["seed"] for r in runs],
            "selected_accuracy": statistics.mean(r["selected_accuracy"] for r in runs),
            "final_accuracy": statistics.mean(r["final_accuracy"] for r in runs),
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
        }
        if name != ORIGINAL:
            entry["selected_delta"] = summarize(_paired(results, name, "selected_accuracy")).to_dict()
            entry["final_delta"] = summarize(_paired(results, name, "final_accuracy")).to_dict()
        out[name] = entry
    return out


def _finished(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """A finished run's ``result.json``, if it was made with these settings (else :class:`CheckpointError`)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} cannot be read back ({type(exc).__name__}); move it away to train that "
                              "run again") from None
    if not isinstance(result, dict):
        raise CheckpointError(f"{path} is not a run result; move it away to train that run again")
    refuse_changes(path, result.get("settings"), settings)
    return result


def run_rewrite_experiment(cfg: RewriteConfig, source: Source, seeds: Sequence[int], out: str | Path, *,
                           resume: bool = False, plots: bool = True,
                           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train every variant for every seed in ``out/<variant>/seed-<k>/``; write and return the report.

    A finished run leaves ``result.json`` with the settings that define it (the
    configuration and :func:`~rffsurgery.data.base.data_settings`); with ``resume`` it is
    read back instead of retrained, unless a setting differs (refused, naming it), and
    without ``resume`` an existing result is never overwritten.
    """
    out = Path(out)
    if not seeds:
        raise InvalidArgument("need at least one seed")
    variants = cfg.variants()
    settings = {"config": cfg.identity(), "data": data_settings(source)}
    results = []
    with user_code(f"the model {cfg.model}", FORWARD_FIX, exits_only=True):
        for seed in seeds:
            results += _run_seed(cfg, source, seed, out, variants, settings, resume, log)
    return _report(cfg, source, seeds, out, variants, results, plots)


def _run_seed(cfg: RewriteConfig, source: Source, seed: int, out: Path, variants: dict[str, dict[str, Any]],
              settings: dict[str, Any], resume: bool, log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Every variant of one seed: read back when finished (and ``resume``), else built and trained."""
    paths = {name: out / name / f"seed-{seed}" / "result.json" for name in variants}
    done = [name for name, path in paths.items() if path.exists()]
    if done and not resume:
        raise CheckpointError(f"{paths[done[0]]} already exists: pass --resume to reuse finished runs, or "
                              "choose another --out folder (nothing was overwritten)")
    pending = [name for name in variants if name not in done]
    if pending:
        train, test, evaluation = classification_data(source, seed, cfg.holdout)
        train, select = holdout(train, cfg.selection, seed, "select")
        size = input_size_of(train)
        # every variant is built before any trains, so a rewrite that does not fit fails at once
        models = {name: make_variant(cfg, variants[name], len(train.classes), size, seed) for name in pending}
    results = []
    for name in variants:
        if name in done:
            results.append(_finished(paths[name], settings))
            continue
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        result = train_variant(cfg, name, models.pop(name), train, select, test, seed, paths[name].parent)
        result.update(classes=len(train.classes), evaluation=evaluation, train_size=len(train),
                      selection_size=len(select), eval_size=len(test), settings=settings)
        write_text(paths[name], json.dumps(result, indent=1) + "\n")
        if log is not None:
            log(f"seed {seed} {name}: {result['parameters']:,} params, selected {result['selected_accuracy']:.3f} "
                f"(epoch {result['selected_epoch']}), final {result['final_accuracy']:.3f}, "
                f"{result['epoch_seconds']:.2f} s/epoch")
        results.append(result)
    return results


def _report(cfg: RewriteConfig, source: Source, seeds: Sequence[int], out: Path, variants: dict[str, dict[str, Any]],
            results: list[dict[str, Any]], plots: bool) -> dict[str, Any]:
    """The experiment's report over every run, written to ``out`` (and returned)."""
    info = {k: results[0][k] for k in ("classes", "evaluation", "train_size", "selection_size", "eval_size")}
    report = {"meta": {"protocol": "rewrite", "source": source.name, "model": cfg.model, "config": cfg.to_dict(),
                       "seeds": list(seeds), **info},
              "variants": aggregate(results, list(variants)),
              "runs": [{k: v for k, v in r.items() if k not in ("history", "settings")} for r in results]}
    return write_report(out, report, results, plots)
