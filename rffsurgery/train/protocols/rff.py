"""The RFF experiment protocol (docs/rff-method.md; the paper's Fig. 8): base training → branch → transfer → delta.

1. **Base**: one model trains on the base classes for ``n`` epochs.  Experiment-1 mode
   fixes ``n`` (``epochs``); experiment-2 mode (``until_overfit``) trains until the onset of
   overfitting, defined as: *n is the epoch with the lowest validation loss, once
   ``patience`` further epochs have failed to lower it* (or ``max_epochs`` is reached, in
   which case ``onset_detected`` is false).  Training then continues from the state saved at
   the end of epoch ``n``.
2. **Branch** (epoch ``n + 1``): every arm starts from a deep copy of that saved state
   (weights, BatchNorm statistics and optimizer moments and step counts): model 1 trains
   one epoch normally and model 2 trains it with the freeze plan applied (RFF).  Both see
   the same batch order, augmentation and dropout masks.
3. **Transfer**: each model gets the same freshly initialised output layer for the transfer
   classes and trains it for ``transfer_epochs`` with identical hyper-parameters and random
   numbers.  By default only that layer trains (fixed feature extractor, BatchNorm in
   inference mode, features computed once); ``finetune`` trains every weight instead.
   The metric (``probe``) is the validation accuracy of either an L2-regularised logistic
   regression fit to convergence on the frozen features (``"lbfgs"``, the default, see
   :mod:`rffsurgery.train.probe`) or of that trained head after its last epoch (``"sgd"``,
   the paper's); with a fixed extractor both are computed and reported, and a second
   probe on the **pooled conv features** (the global average of the last conv stage's
   maps, :func:`~rffsurgery.train.loop.extract_features`), since the claim is about conv
   features.  Each probe fit records whether it converged.  No figure is selected on the
   validation (test) images: the SGD head counts at its last epoch.  ``delta = rff − normal``.
4. **Controls** (``control``: ``"aa"``, ``"placebo"`` or ``"both"``), extra arms of the
   branch epoch, transferred like the others:

   * ``aa`` — an A/A control: the branch epoch trained normally in another data order
     (and dropout masks); ``aa_delta = aa − normal`` is the noise floor of the data order;
   * ``placebo`` — a layer-matched placebo: the same data order as RFF, with as many other
     layers frozen, of about the same parameter count, none of them RF-expanding
     (:mod:`rffsurgery.plan.placebo`); ``placebo_delta = placebo − normal``, and
     ``rff − placebo`` asks whether *which* layers are frozen matters.

   The arms differ only by their manipulation: the same starting state, and the same
   epoch seed except the A/A arm's.

A checkpoint is written atomically after every base epoch, after the branch and at the
end; with ``resume`` a run continues from it and reproduces the uninterrupted numbers
exactly (every epoch draws its random numbers from a seed derived from its name, see
:mod:`rffsurgery.train.seeding`).  It holds only what resuming needs: a finished run's
checkpoint keeps its result and epoch log, no model weights.

A freeze plan (``plan``) is applied in the branch epoch ``n + 1`` only: base epochs are
shared by both models and train unfrozen.  So the plan's schedule must freeze in epoch
``n + 1`` (with ``until_overfit``, where n is found while training, in every possible
branch epoch ``2 … max_epochs + 1``), or the plan is refused before training starts; the
``plan.json`` saved in the run folder has the schedule that was applied, ``[n + 1]``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from ...analysis.analyzer import analyze
from ...analysis.result import Plan
from ...data.base import Images, ProtocolData, input_size_of
from ...errors import InvalidArgument, names
from ...limits import check_fields
from ...models.head import head_in_features, make_head
from ...plan.apply import freeze
from ...plan.document import BN_MODES, FreezePlan, PlanError, Schedule, build_freeze_plan
from ...plan.placebo import Placebo, placebo_plan
from ...seeding import derive_seed, seed_everything
from ...tags import POLICIES
from ..augment import Augment
from ..checkpoint import CheckpointError, load_checkpoint, refuse_changes, save_checkpoint
from ..device import MEMORY_FORMATS, Runtime, select_device, with_memory_format
from ..distributed import current, place
from ..logs import log_row, write_logs
from ..loop import EpochStats, evaluate, extract_features, make_batches, train_epoch
from ..model import build_model
from ..probe import fit_probe
from ..progress import Progress

__all__ = ["CONTROLS", "ProtocolConfig", "base_finished", "check_schedule", "run_protocol"]

Stage = Literal["base", "branch"]

CONTROLS: dict[str | None, tuple[str, ...]] = {None: (), "aa": ("aa",), "placebo": ("placebo",),
                                               "both": ("placebo", "aa")}
"""``control`` → the extra arms of the branch epoch (module docstring, step 4)."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything that determines a run's numbers (plus ``device``/``workers``, which only affect speed)."""

    model: str = "rff-base-cnn"
    epochs: int = 4
    until_overfit: bool = False
    max_epochs: int = 30
    patience: int = 2
    transfer_epochs: int = 50
    finetune: bool = False
    optimizer: str = "adam"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    augment: Augment = field(default_factory=Augment)
    holdout: float = 0.2
    plan: str | None = None
    policy: str = "paper"
    select: tuple[str, ...] = ()
    bn: str = "train"
    device: str = "auto"
    amp: bool = True
    deterministic: bool = False
    workers: int = 2
    memory_format: str = "auto"
    rewrite: dict[str, Any] | None = None  # keyword arguments of rffsurgery.surgery.rewrite, applied to the model
    probe: str | None = None  # None: "lbfgs", or "sgd" with finetune (there are no frozen features to probe)
    probe_l2: float = 1e-3
    control: str | None = None  # None, "aa", "placebo" or "both"; True/False (the former flag) mean "aa"/None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.plan is None and self.policy not in POLICIES:
            raise InvalidArgument(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        if self.bn not in BN_MODES:
            raise InvalidArgument(f"unknown BatchNorm mode {self.bn!r}; choose one of {', '.join(BN_MODES)}")
        if self.optimizer not in ("adam", "sgd"):
            raise InvalidArgument(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise InvalidArgument(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, "
                                  f"got {self.memory_format!r}")
        object.__setattr__(self, "select", tuple(names(self.select, "select")))
        if not isinstance(self.augment, Augment):
            raise InvalidArgument(f"augment must be an Augment(flip, rotation, zoom), got {type(self.augment).__name__}")
        if bool(self.select) != (self.policy == "names"):
            raise InvalidArgument("--select names the layers for --policy names, which needs at least one: give "
                                  "both (e.g. --policy names --select 'features.6' --select 'layer*.0.conv1') "
                                  f"or neither (policy {self.policy!r}, select {list(self.select)})")
        if self.probe is None:
            object.__setattr__(self, "probe", "sgd" if self.finetune else "lbfgs")
        if self.probe not in ("lbfgs", "sgd"):
            raise InvalidArgument(f"probe must be 'lbfgs' or 'sgd', got {self.probe!r}")
        if self.probe == "lbfgs" and self.finetune:
            raise InvalidArgument("--probe lbfgs measures frozen features; with --finetune use --probe sgd")
        if isinstance(self.control, bool):  # the former flag: True was the data-order control
            object.__setattr__(self, "control", "aa" if self.control else None)
        if self.control not in CONTROLS:
            raise InvalidArgument(f"control must be 'aa', 'placebo' or 'both' (or None), got {self.control!r}")

    @property
    def arms(self) -> tuple[str, ...]:
        """The models of the branch epoch: normal, RFF and the controls."""
        return ("normal", "rff", *CONTROLS[self.control])

    @property
    def metric(self) -> str:
        """The per-arm key of the reported accuracy: the L-BFGS probe's, or the SGD head's last epoch's."""
        return "lbfgs" if self.probe == "lbfgs" else "sgd_final"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (not the device, worker count or layout)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "workers", "memory_format")}

    def branch_epochs(self) -> range:
        """The epochs the branch (RFF) epoch n + 1 can fall in."""
        return range(2, self.max_epochs + 2) if self.until_overfit else range(self.epochs + 1, self.epochs + 2)


def base_finished(cfg: ProtocolConfig, val_losses: list[float]) -> int | None:
    """``n`` once base training is over (see the module docstring for the criterion), else ``None``."""
    done = len(val_losses)
    if not cfg.until_overfit:
        return cfg.epochs if done >= cfg.epochs else None
    if done == 0:
        return None
    best = 1 + min(range(done), key=val_losses.__getitem__)
    return best if done - best >= cfg.patience or done >= cfg.max_epochs else None


def check_schedule(plan: "FreezePlan", cfg: ProtocolConfig, where: str = "the plan") -> None:
    """Refuse a plan whose schedule does not freeze in the protocol's branch epoch(s); see the module docstring."""
    missing = [e for e in cfg.branch_epochs() if not plan.schedule.is_frozen(e)]
    if not missing:
        return
    if cfg.until_overfit:
        raise PlanError(f"{where} freezes in {plan.schedule.describe()}, but with --until-overfit the protocol's RFF "
                        f"epoch n+1 is found while training and may be any of 2…{cfg.max_epochs + 1} (not frozen: "
                        f"{', '.join(map(str, missing[:5]))}{' …' if len(missing) > 5 else ''}): make the plan with "
                        "--every 1 --start 2, or omit --plan")
    branch = cfg.epochs + 1
    raise PlanError(f"{where} freezes in {plan.schedule.describe()}; the protocol's RFF epoch is n+1={branch}: make "
                    f"the plan with --epochs {branch} (rffsurgery analyze … --export-plan … --epochs {branch}), "
                    "or omit --plan")


def _clone(state: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(state)


class _Run:
    """One (split, seed) run; the stages are methods so that resume can enter at any of them."""

    def __init__(self, cfg: ProtocolConfig, data: ProtocolData, seed: int, workdir: Path, split: str,
                 progress: Progress | None = None, data_settings: dict[str, Any] | None = None) -> None:
        self.cfg, self.data, self.seed, self.workdir, self.split = cfg, data, seed, workdir, split
        self.world, self.progress, self.data_settings = current(), progress, data_settings
        runtime = place(select_device(cfg.device, cfg.amp, deterministic=cfg.deterministic), self.world)
        self.path = workdir / "checkpoint.pt"
        self.clock = (time.perf_counter(), 0.0)  # (start of this session, wall seconds of earlier sessions)
        seed_everything(seed, "init")
        model, self.head_path, _ = build_model(cfg.model, len(data.base_train.classes), cfg.dropout,
                                               rewrite=cfg.rewrite)
        self.runtime: Runtime = with_memory_format(runtime, model, cfg.memory_format)
        analysis = analyze(model, input_size_of(data.base_train)) if cfg.plan is None or "placebo" in cfg.arms \
            else None
        self.plan = self._freeze_plan(model, analysis)
        if cfg.plan is not None:
            check_schedule(self.plan, cfg, f"plan {cfg.plan}")
        self.placebo: Placebo | None = placebo_plan(analysis, self.plan) if "placebo" in cfg.arms else None
        self.model = model.to(self.runtime.device)
        if self.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.base_train, self.base_val = self._batches(data.base_train, True), self._batches(data.base_val, False)
        self.transfer_train = self._batches(data.transfer_train, True)
        self.transfer_val = self._batches(data.transfer_val, False)
        self.history: list[dict[str, Any]] = []

    # -- helpers ---------------------------------------------------------------
    def _batches(self, images: Images, training: bool):
        size = self.cfg.batch_size if training else max(self.cfg.batch_size, 256)  # evaluation needs no small batches
        return make_batches(images, self.runtime, size, self.cfg.workers)

    def _freeze_plan(self, model: nn.Module, analysis: Plan | None) -> "FreezePlan":
        """The plan of ``--plan`` (checked against the model), else one tagged on ``analysis`` by the policy."""
        if self.cfg.plan is None:
            plan = build_freeze_plan(analysis, policy=self.cfg.policy, bn=self.cfg.bn, **self._policy_options())
        else:
            plan = FreezePlan.load(self.cfg.plan)
            try:
                plan.check(model)
            except PlanError as exc:
                raise PlanError(f"plan {self.cfg.plan} does not fit {self.cfg.model} with "
                                f"{len(self.data.base_train.classes)} base classes: {exc}") from None
        return plan

    def _policy_options(self) -> dict[str, Any]:
        return {"patterns": list(self.cfg.select)} if self.cfg.policy == "names" else {}

    def _export_plans(self, branch_epoch: int) -> None:
        """``plan.json`` (and ``placebo-plan.json``): the plans as applied, frozen in the branch epoch only."""
        if self.world.main:
            plans = {"plan.json": self.plan, "placebo-plan.json": self.placebo.plan if self.placebo else None}
            for file, plan in plans.items():
                if plan is not None:  # the run folder's own copies, rewritten on resume
                    dataclasses.replace(plan, schedule=Schedule(epochs=(branch_epoch,))).export(self.workdir / file,
                                                                                              force=True)

    def wall_seconds(self) -> float:
        """Wall time of this run so far, over every session that worked on it (resumes included)."""
        start, before = self.clock
        return before + time.perf_counter() - start

    def _optimizer(self, params) -> torch.optim.Optimizer:
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.cfg.lr, momentum=0.9, weight_decay=self.cfg.weight_decay)
        return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def save(self, stage: str, **payload: Any) -> None:
        """Checkpoint and logs, written by the main process while the others wait."""
        if self.world.main:
            save_checkpoint(self.path, {"stage": stage, "config": self.cfg.identity(), "seed": self.seed,
                                        "split": self.split, "data": self.data_settings,
                                        "world_size": self.world.size, "history": self.history,
                                        "wall_seconds": self.wall_seconds(), **payload})
            write_logs(self.workdir, self.history)
        self.world.barrier()

    def _train(self, model: nn.Module, batches, optimizer, stage: str, name: str, epoch: int, val_batches,
               augment: Augment | None, order: str | None = None) -> tuple[EpochStats, tuple[float, float]]:
        """One epoch; ``order`` (default: ``stage``) labels the seed of its data order and random numbers."""
        stats = train_epoch(model, batches, optimizer, self.runtime, derive_seed(self.seed, order or stage, epoch),
                            augment, self.cfg.l1, desc=f"{self.split} seed {self.seed} {stage} {name} {epoch}",
                            world=self.world)
        val = evaluate(model, val_batches, self.runtime, self.world)
        self.history.append(log_row(stage, name, epoch, stats, val))
        if self.progress is not None:
            self.progress.epoch(f"{self.split} seed {self.seed}", stage, name, self._of(stage, epoch), stats.loss,
                                stats.accuracy, val[1], stats.seconds, self._remaining())
        return stats, val

    def _of(self, stage: str, epoch: int) -> str:
        """``3/4`` (``3/≤30`` while the onset of overfitting is being looked for)."""
        if stage == "base":
            return f"{epoch}/≤{self.cfg.max_epochs}" if self.cfg.until_overfit else f"{epoch}/{self.cfg.epochs}"
        return f"{epoch}/{self.cfg.transfer_epochs}" if stage == "transfer" else str(epoch)

    def _remaining(self) -> dict[str, int]:
        done = {stage: sum(r["stage"] == stage for r in self.history) for stage in ("base", "branch", "transfer")}
        planned = per_run_epochs(self.cfg)
        if done["branch"]:
            planned["base"] = done["base"]
        return {stage: max(0, planned[stage] - done[stage]) for stage in planned}

    # -- stages ----------------------------------------------------------------
    def base(self, state: dict[str, Any] | None) -> tuple[int, dict, dict]:
        """Train until :func:`base_finished`; returns n and the model/optimizer state at the end of epoch n."""
        opt = self._optimizer(self.model.parameters())
        best = None
        if state is not None:
            self.model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            best = state["best"]
        val_losses = [r["val_loss"] for r in self.history if r["stage"] == "base"]
        while (n := base_finished(self.cfg, val_losses)) is None:
            epoch = len(val_losses) + 1
            _, (val_loss, _) = self._train(self.model, self.base_train, opt, "base", "shared", epoch,
                                           self.base_val, self.cfg.augment)
            if self.cfg.until_overfit and (not val_losses or val_loss < min(val_losses)):
                best = {"epoch": epoch, "model": _clone(self.model.state_dict()), "optimizer": _clone(opt.state_dict())}
            val_losses.append(val_loss)
            self.save("base", model=self.model.state_dict(), optimizer=opt.state_dict(), best=best)
        if best is not None:
            return n, best["model"], best["optimizer"]
        return n, _clone(self.model.state_dict()), _clone(opt.state_dict())

    def branch(self, n: int, model_state: dict, opt_state: dict) -> dict[str, Any]:
        """Epoch n+1, every arm from a deep copy of the same state: normally (model 1), under the freeze
        plan (model 2) and the controls: the placebo's plan, or (A/A) normally in another data order."""
        self._export_plans(n + 1)
        out: dict[str, Any] = {"n": n, "states": {}, "seconds": {}}
        plans = {"rff": self.plan, "placebo": self.placebo.plan if self.placebo else None}
        for name in self.cfg.arms:
            self.model.load_state_dict(model_state)  # copies the values into the model's own tensors
            opt = self._optimizer(self.model.parameters())
            # a deep copy: load_state_dict keeps the given moment tensors, which the epoch then updates in place
            opt.load_state_dict(_clone(opt_state))
            plan = plans.get(name)
            with freeze(self.model, plan, check=False) if plan is not None else contextlib.nullcontext():
                stats, _ = self._train(self.model, self.base_train, opt, "branch", name, n + 1, self.base_val,
                                       self.cfg.augment, "branch-control" if name == "aa" else None)
            out["states"][name] = _clone(self.model.state_dict())
            out["seconds"][name] = stats.seconds
        return out

    def transfer(self, branch: dict[str, Any]) -> dict[str, Any]:
        """Same fresh head, same random numbers, for both branch models; returns the final models too."""
        n_transfer = len(self.data.transfer_train.classes)
        seed_everything(self.seed, "head")
        head0 = make_head(head_in_features(self.model, self.head_path), n_transfer, self.cfg.dropout)
        accuracy, finals = {}, {}
        for name in self.cfg.arms:
            self.model.load_state_dict(branch["states"][name])
            model = copy.deepcopy(self.model)
            model.set_submodule(self.head_path, copy.deepcopy(head0).to(self.runtime.device))
            accuracy[name] = self._transfer_one(model, name)
            finals[name] = model.state_dict()
        return {"accuracy": accuracy, "states": finals, "head_init": head0.state_dict()}

    def _transfer_one(self, model: nn.Module, name: str) -> dict[str, Any]:
        """Validation accuracy of the SGD-trained head after its last epoch and, without finetuning, of the
        probes on the head's input (``lbfgs``) and on the pooled conv features (``lbfgs_pooled``)."""
        metrics: dict[str, Any] = {}
        if self.cfg.finetune:
            trained, train_b, val_b, augment = model, self.transfer_train, self.transfer_val, self.cfg.augment
        else:  # fixed feature extractor: the body runs once, only the head trains
            trained = model.get_submodule(self.head_path)
            model.set_submodule(self.head_path, nn.Identity())
            train_b, train_pooled = extract_features(model, self.transfer_train, self.runtime, self.cfg.batch_size)
            val_b, val_pooled = extract_features(model, self.transfer_val, self.runtime, self.cfg.batch_size)
            model.set_submodule(self.head_path, trained)
            augment = None
            head_input = self._probe("lbfgs", train_b.x, train_b.y, val_b.x, val_b.y)
            metrics.update(head_input)
            if train_pooled is not None:
                # where the head reads the pooled maps themselves (ResNets) the fit is the same: not fitted twice
                same = torch.equal(train_pooled, train_b.x) and torch.equal(val_pooled, val_b.x)
                metrics.update({f"lbfgs_pooled{k[len('lbfgs'):]}": v for k, v in head_input.items()} if same
                               else self._probe("lbfgs_pooled", train_pooled, train_b.y, val_pooled, val_b.y))
        opt = self._optimizer(trained.parameters())
        for epoch in range(1, self.cfg.transfer_epochs + 1):
            _, val = self._train(trained, train_b, opt, "transfer", name, epoch, val_b, augment)
        metrics["sgd_final"] = val[1]  # the last epoch: no epoch is chosen on the validation images
        return metrics

    def _probe(self, key: str, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
               val_y: torch.Tensor) -> dict[str, Any]:
        """The probe's validation accuracy under ``key``, whether the fit converged, and its final gradient."""
        probe = fit_probe(train_x, train_y, len(self.data.transfer_train.classes), self.cfg.probe_l2)
        return {key: probe.accuracy(val_x, val_y), f"{key}_converged": probe.converged,
                f"{key}_grad_norm": probe.grad_norm}


def per_run_epochs(cfg: ProtocolConfig) -> dict[str, int]:
    """Training epochs per stage in one run (base: an upper bound with ``until_overfit``)."""
    return {"base": cfg.max_epochs if cfg.until_overfit else cfg.epochs, "branch": len(cfg.arms),
            "transfer": 2 * cfg.transfer_epochs}


def _check_resumable(state: dict[str, Any], cfg: ProtocolConfig, seed: int, split: str, path: Path,
                     data_settings: dict[str, Any] | None = None) -> None:
    world = current().size
    if state.get("world_size", 1) != world and state.get("stage") != "done":
        raise CheckpointError(f"{path} was written by a run of {state.get('world_size', 1)} process(es), this one "
                              f"has {world}: resume with the same number (torchrun --nproc_per_node) so that the "
                              "numbers match an uninterrupted run")
    mine = {"config": cfg.identity(), "seed": seed, "split": split, "data": data_settings}
    refuse_changes(path, None if "config" not in state else {k: state.get(k) for k in mine}, mine)


def run_protocol(cfg: ProtocolConfig, data: ProtocolData | Callable[[], ProtocolData], seed: int,
                 workdir: str | Path, *, split: str = "custom", resume: bool = False,
                 stop_after: Stage | None = None, progress: Progress | None = None,
                 data_settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Run (or resume) one protocol run in ``workdir``; returns its result, or ``None`` if stopped early.

    ``data`` may be a function, called only if there is still training to do.
    ``stop_after="base"`` or ``"branch"`` ends the run after that stage's checkpoint
    (continue it later with ``resume=True``).  Without ``resume`` an existing
    checkpoint is never overwritten.  ``progress`` prints the banner and epoch lines.
    ``data_settings`` (what the data depend on besides split and seed, see
    :func:`~rffsurgery.train.data.data_settings`) are recorded in the checkpoint and must
    match on resume.  Under ``torchrun`` (an initialised process group) every process
    calls this with the same arguments; see :mod:`.distributed`.
    """
    workdir = Path(workdir)
    path = workdir / "checkpoint.pt"
    state = None
    exists = path.exists()
    current().barrier()  # every process has looked before the main one writes
    if exists:
        if not resume:
            raise CheckpointError(f"{path} already exists: pass --resume to continue that run, or choose another "
                                  "--out folder (nothing was overwritten)")
        state = load_checkpoint(path)
        _check_resumable(state, cfg, seed, split, path, data_settings)
        if state["stage"] == "done":
            return state["result"]
    workdir.mkdir(parents=True, exist_ok=True)
    data = data() if callable(data) else data
    run = _Run(cfg, data, seed, workdir, split, progress, data_settings)
    if progress is not None:
        progress.say(f"{split} seed {seed}: {data.describe()}; device {run.runtime.describe()}"
                     + (f" × {run.world.size} processes" if run.world.parallel else "")
                     + (f"; resuming after the {state['stage']} stage" if state is not None else ""))
    if state is not None:
        run.history = list(state["history"])
        run.clock = (run.clock[0], state.get("wall_seconds", 0.0))
    if state is None or state["stage"] == "base":
        n, model_state, opt_state = run.base(state)
        if stop_after == "base":
            return None
        branch = run.branch(n, model_state, opt_state)
        run.save("branch", branch=branch)
        if stop_after == "branch":
            return None
    else:
        branch = state["branch"]
    transfer = run.transfer(branch)
    base_rows = [r for r in run.history if r["stage"] == "base"]
    n = branch["n"]
    metrics = transfer["accuracy"]
    accuracy = {arm: metrics[arm][cfg.metric] for arm in cfg.arms}
    seconds = branch["seconds"]
    result = {
        "split": split, "seed": seed, "model": cfg.model, "device": run.runtime.describe(),
        "base_classes": list(data.base_train.classes), "transfer_classes": list(data.transfer_train.classes),
        "transfer_val_size": len(data.transfer_val),
        "n": n, "branch_epoch": n + 1,
        "onset_detected": (len(base_rows) - n >= cfg.patience) if cfg.until_overfit else None,
        "frozen": list(run.plan.parameter_names),
        "probe": cfg.probe, "metric": cfg.metric, "arms": list(cfg.arms),
        **{f"{arm}_accuracy": accuracy[arm] for arm in cfg.arms},
        "delta": accuracy["rff"] - accuracy["normal"],
        **{f"{arm}_delta": accuracy[arm] - accuracy["normal"] for arm in cfg.arms[2:]},
        "placebo_plan": run.placebo.to_dict() if run.placebo else None,
        **{f"{arm}_epoch_seconds": seconds[arm] for arm in cfg.arms},
        "epoch_time_ratio": seconds["rff"] / seconds["normal"],
        "wall_seconds": run.wall_seconds(),
        **{f"{model}_{k}": v for model, m in metrics.items() for k, v in m.items()},
    }
    run.save("done", result=result)  # resume needs nothing else: no model copies are kept
    return result
