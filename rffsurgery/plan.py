"""Freeze plans: a versioned JSON document saying which parameters to freeze, and when.

A plan is produced from an analysis (``analyze(model).freeze_plan()``), written
with :meth:`FreezePlan.export`, read back with :meth:`FreezePlan.load` (which
validates every field and refuses files from a newer schema), checked against a
model by the fingerprint of its traced graph, and applied with :func:`freeze`
or an epoch-driven :class:`FreezeSchedule`.

Freezing sets ``requires_grad=False`` *and* clears ``.grad``: an optimizer skips
parameters whose gradient is ``None``, so momentum and (decoupled) weight decay
cannot move a frozen weight, and autograd skips its weight-gradient work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import nn

from . import __version__
from .errors import InvalidArgument, RffError
from .files import prepare_output, write_text

if TYPE_CHECKING:
    from .analysis import Plan

__all__ = ["BN_MODES", "FreezePlan", "FreezeSchedule", "PlanError", "Schedule", "fingerprint", "freeze"]

SCHEMA = "rffsurgery.freeze-plan"
SCHEMA_VERSION = 1
MAX_PLAN_BYTES = 16 * 1024 * 1024
BN_MODES = {
    "train": "BatchNorm layers train normally (the paper froze only the weight layers)",
    "freeze-affine": "also freeze the affine weight/bias of the BatchNorm right after each tagged layer",
    "freeze": "also freeze that BatchNorm's affine parameters and keep its running statistics unchanged",
}


class PlanError(RffError, ValueError):
    """A plan that is malformed, from a future schema, or does not match the model."""


# ---------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """In which (1-based) epochs the freeze is on: an explicit list, or every k-th epoch from ``start``.

    ``Schedule(epochs=(5,))`` is the paper's single RFF epoch; ``Schedule(every=2, start=5)``
    alternates from epoch 5 on (5, 7, 9, …), up to ``stop`` inclusive if given.
    """

    epochs: tuple[int, ...] = ()
    every: int | None = None
    start: int = 1
    stop: int | None = None

    def __post_init__(self) -> None:
        if self.every is None and not self.epochs:
            raise PlanError("a schedule needs epochs (e.g. [5]) or a repeating pattern (every=2, start=5)")
        if self.every is not None and self.epochs:
            raise PlanError("a schedule is either a list of epochs or a repeating pattern, not both")
        if any(not isinstance(e, int) or isinstance(e, bool) or e < 1 for e in self.epochs):
            raise PlanError(f"schedule epochs must be integers ≥ 1, got {list(self.epochs)}")
        if self.every is not None and (not isinstance(self.every, int) or self.every < 1):
            raise PlanError(f"schedule 'every' must be an integer ≥ 1, got {self.every!r}")
        if not isinstance(self.start, int) or self.start < 1:
            raise PlanError(f"schedule 'start' must be an integer ≥ 1, got {self.start!r}")
        if self.stop is not None and (not isinstance(self.stop, int) or self.stop < self.start):
            raise PlanError(f"schedule 'stop' must be an integer ≥ start, got {self.stop!r}")

    def is_frozen(self, epoch: int) -> bool:
        if self.every is None:
            return epoch in self.epochs
        return epoch >= self.start and (self.stop is None or epoch <= self.stop) and (epoch - self.start) % self.every == 0

    def to_dict(self) -> dict[str, Any]:
        if self.every is None:
            return {"epochs": list(self.epochs)}
        return {"every": self.every, "start": self.start, "stop": self.stop}

    @classmethod
    def from_dict(cls, data: Any) -> "Schedule":
        if not isinstance(data, dict) or not set(data) <= {"epochs", "every", "start", "stop"}:
            raise PlanError(f"schedule must be {{'epochs': [...]}} or {{'every', 'start', 'stop'}}, got {data!r}")
        epochs = data.get("epochs", [])
        if not isinstance(epochs, list):
            raise PlanError("schedule 'epochs' must be a list of integers")
        return cls(epochs=tuple(epochs), every=data.get("every"), start=data.get("start", 1), stop=data.get("stop"))

    def describe(self) -> str:
        if self.every is None:
            return "epochs " + ", ".join(map(str, self.epochs))
        end = f" to {self.stop}" if self.stop is not None else ""
        return f"every {self.every} epoch(s) from epoch {self.start}{end}"


DEFAULT_SCHEDULE = Schedule(every=2, start=2)


# ---------------------------------------------------------------------------
# fingerprint
# ---------------------------------------------------------------------------
def fingerprint(model_or_plan: "nn.Module | Plan") -> str:
    """SHA-256 over the traced graph: node names, ops and parameter shapes, in execution order.

    Weights' values do not enter it (a trained model keeps its plan), shapes and
    structure do (a different width, depth or head breaks it).
    """
    from .analysis import Plan

    if isinstance(model_or_plan, Plan):
        traced = model_or_plan.traced
    else:
        from .trace import trace

        traced = trace(model_or_plan)
    names = traced.names
    modules = dict(traced.root.named_modules())
    digest = hashlib.sha256()
    for node in traced.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            op = type(module).__name__
            shapes = [f"{n}:{tuple(p.shape)}" for n, p in module.named_parameters(recurse=False)]
        elif node.op == "get_attr":
            op, shapes = "get_attr", []
        else:
            op = getattr(node.target, "__name__", str(node.target))
            shapes = []
        digest.update(f"{names[node]}|{node.op}|{op}|{','.join(shapes)}\n".encode())
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------------
# the plan document
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FreezePlan:
    """Which parameters to freeze, in which epochs, for which model (see ``docs`` in the JSON)."""

    model_name: str
    model_class: str
    fingerprint: str
    input_size: tuple[int, ...]
    policy: str
    policy_options: dict[str, Any]
    tagged: tuple[dict[str, Any], ...]
    parameter_names: tuple[str, ...]
    schedule: Schedule = DEFAULT_SCHEDULE
    bn_mode: str = "train"
    bn_modules: tuple[str, ...] = ()
    tool_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.parameter_names:
            raise PlanError(
                f"empty freeze set: policy {self.policy!r} tagged no layer with parameters in {self.model_name}"
            )
        if len(set(self.parameter_names)) != len(self.parameter_names):
            raise PlanError("duplicate parameter names in the freeze set")
        if self.bn_mode not in BN_MODES:
            raise PlanError(f"unknown BatchNorm mode {self.bn_mode!r}; choose one of {', '.join(BN_MODES)}")

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "rffsurgery", "version": self.tool_version},
            "model": {"name": self.model_name, "class": self.model_class, "fingerprint": self.fingerprint},
            "input_size": list(self.input_size),
            "policy": {"name": self.policy, "options": self.policy_options},
            "tagged": list(self.tagged),
            "freeze": {
                "parameters": list(self.parameter_names),
                "batchnorm": {"mode": self.bn_mode, "modules": list(self.bn_modules),
                              "meaning": BN_MODES[self.bn_mode]},
            },
            "schedule": self.schedule.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def export(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the plan atomically (temp file + rename) so a crash never leaves half a plan.

        An existing file is replaced only with ``force``; the folder is created if needed.
        """
        path = prepare_output(path, force=force, option="the plan", make_parents=True)
        return write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "FreezePlan":
        path = Path(path)
        try:
            if path.stat().st_size > MAX_PLAN_BYTES:
                raise PlanError(f"{path}: {path.stat().st_size} bytes is too large for a freeze plan")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"cannot read plan {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise PlanError(f"{path} is not a UTF-8 text file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise PlanError(f"{path} is nested too deeply to be a freeze plan") from None
        try:
            return cls.from_dict(data)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> "FreezePlan":
        if not isinstance(data, dict):
            raise PlanError("a freeze plan is a JSON object")
        if data.get("schema") != SCHEMA:
            raise PlanError(f"not a freeze plan (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise PlanError(f"schema_version must be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            tool = _get(data, "tool", dict).get("version", "?")
            raise PlanError(f"written by rffsurgery {tool} with schema v{version}; this version "
                            f"({__version__}) reads up to v{SCHEMA_VERSION}: upgrade rffsurgery")
        if version < 1:
            raise PlanError(f"unsupported schema_version {version}")
        model = _get(data, "model", dict)
        policy = _get(data, "policy", dict)
        freeze_ = _get(data, "freeze", dict)
        bn = _get(freeze_, "batchnorm", dict)
        tagged = _get(data, "tagged", list)
        if not all(isinstance(t, dict) and isinstance(t.get("node"), str) for t in tagged):
            raise PlanError("'tagged' must be a list of objects with a 'node' name")
        size = _get(data, "input_size", list)
        if not size or not all(isinstance(v, int) and v > 0 for v in size):
            raise PlanError(f"'input_size' must be a list of positive integers, got {size!r}")
        return cls(
            model_name=_get(model, "name", str),
            model_class=_get(model, "class", str),
            fingerprint=_get(model, "fingerprint", str),
            input_size=tuple(size),
            policy=_get(policy, "name", str),
            policy_options=_get(policy, "options", dict),
            tagged=tuple(tagged),
            parameter_names=tuple(_str_list(freeze_, "parameters")),
            schedule=Schedule.from_dict(data.get("schedule")),
            bn_mode=_get(bn, "mode", str),
            bn_modules=tuple(_str_list(bn, "modules")),
            tool_version=str(_get(data, "tool", dict).get("version", "")),
        )

    # -- checks ---------------------------------------------------------------
    def check(self, model: nn.Module) -> None:
        """Refuse a model this plan was not made for: different graph or missing parameters."""
        params = dict(model.named_parameters())
        missing = [n for n in self.parameter_names if n not in params]
        if missing:
            raise PlanError(f"the model has no parameter(s) {', '.join(missing[:5])}"
                            f"{' …' if len(missing) > 5 else ''} named in the plan for {self.model_name}")
        modules = dict(model.named_modules())
        bad_bn = [m for m in self.bn_modules if not isinstance(modules.get(m), nn.modules.batchnorm._BatchNorm)]
        if bad_bn:
            raise PlanError(f"the plan's BatchNorm module(s) {', '.join(bad_bn)} are not BatchNorm layers of this model")
        actual = fingerprint(model)
        if actual != self.fingerprint:
            raise PlanError(
                f"the model does not match the plan: its traced graph fingerprint is {actual[:19]}…, the plan was "
                f"made for {self.model_name} ({self.model_class}) with {self.fingerprint[:19]}…. "
                "Re-create the plan from this model (rffsurgery analyze … --export-plan)."
            )

    def describe(self) -> str:
        """A readable summary (``rffsurgery plan show``)."""
        lines = [
            f"freeze plan v{SCHEMA_VERSION} for {self.model_name} ({self.model_class}), made by rffsurgery {self.tool_version}",
            f"  fingerprint  {self.fingerprint}",
            f"  input size   {'x'.join(map(str, self.input_size))}",
            f"  policy       {self.policy} {json.dumps(self.policy_options) if self.policy_options else ''}".rstrip(),
            f"  schedule     frozen in {self.schedule.describe()}",
            f"  batchnorm    {self.bn_mode}: {BN_MODES[self.bn_mode]}",
            f"  tagged       {len(self.tagged)} layer(s):",
        ]
        for t in self.tagged:
            geo = f"RF {t.get('rf')} stride {t.get('stride')} padding {t.get('padding')}"
            lines.append(f"    {t['node']:<32} {geo}  ({t.get('reason', '')})")
        lines.append(f"  parameters   {len(self.parameter_names)} to freeze:")
        lines += [f"    {p}" for p in self.parameter_names]
        if self.bn_modules:
            lines.append(f"  bn modules   {', '.join(self.bn_modules)}")
        return "\n".join(lines)


def _get(data: dict, key: str, kind: type) -> Any:
    if key not in data:
        raise PlanError(f"missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise PlanError(f"field {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _str_list(data: dict, key: str) -> list[str]:
    value = _get(data, key, list)
    if not all(isinstance(v, str) for v in value):
        raise PlanError(f"field {key!r} must be a list of strings")
    return value


# ---------------------------------------------------------------------------
# building a plan from an analysis
# ---------------------------------------------------------------------------
def build_plan(plan: "Plan", policy: str = "paper", schedule: Schedule | None = None, bn: str = "train",
               **options: Any) -> FreezePlan:
    """Tag ``plan`` with ``policy`` and turn the tags into a :class:`FreezePlan`."""
    if bn not in BN_MODES:
        raise PlanError(f"unknown BatchNorm mode {bn!r}; choose one of {', '.join(BN_MODES)}")
    tags = plan.tags(policy, **options)
    params: list[str] = []
    bn_modules: list[str] = []
    tagged = []
    modules = dict(plan.traced.root.named_modules())
    for t in tags:
        layer = plan.layers[t.name]
        params += layer.params
        tagged.append({"node": t.name, "op": layer.op, "rf": _jsonable(layer.rf),
                       "stride": _jsonable(layer.stride), "padding": _jsonable(layer.padding), "reason": t.reason})
        if bn != "train":
            follower = _following_batchnorm(plan, t.name, modules)
            if follower is not None:
                bn_modules.append(follower)
                params += plan.layers[follower].params
    return FreezePlan(
        model_name=plan.model_name,
        model_class=f"{type(plan.model).__module__}.{type(plan.model).__qualname__}",
        fingerprint=fingerprint(plan),
        input_size=tuple(plan.input_size),
        policy=policy,
        policy_options={k: list(v) if isinstance(v, (tuple, list)) else v for k, v in options.items()},
        tagged=tuple(tagged),
        parameter_names=tuple(dict.fromkeys(params)),
        schedule=schedule or DEFAULT_SCHEDULE,
        bn_mode=bn,
        bn_modules=tuple(bn_modules),
    )


def _jsonable(values: Sequence[Any]) -> list[Any]:
    out = []
    for v in values:
        if v is None or isinstance(v, (int, str)):
            out.append(v)
        else:  # Fraction
            out.append(int(v) if v.denominator == 1 else f"{v.numerator}/{v.denominator}")
    return out


def _following_batchnorm(plan: "Plan", name: str, modules: dict[str, nn.Module]) -> str | None:
    """The BatchNorm node that consumes the tagged layer's output directly, if any."""
    for layer in plan:
        if layer.inputs[:1] == (name,) and layer.kind == "call_module" and isinstance(
                modules.get(layer.target), nn.modules.batchnorm._BatchNorm):
            return layer.name
    return None


# ---------------------------------------------------------------------------
# applying a plan
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def freeze(model: nn.Module, plan: "FreezePlan | Sequence[str]", check: bool = True) -> Iterator[list[str]]:
    """Freeze the plan's parameters for the duration of the block, then restore them.

    Frozen parameters get ``requires_grad=False`` and ``grad=None`` (so SGD momentum,
    Adam moments and weight decay leave them bit-identical); in the plan's
    ``"freeze"`` BatchNorm mode the running statistics of the listed BatchNorm
    layers are restored on exit as well.  ``plan`` may also be a plain list of
    parameter names (no fingerprint check).
    """
    if isinstance(plan, (str, bytes)) or not isinstance(plan, (FreezePlan, Sequence)):
        hint = f"; for one parameter write [{plan!r}]" if isinstance(plan, str) else ""
        raise InvalidArgument(f"freeze() takes a FreezePlan or a list of parameter names, "
                              f"got {type(plan).__name__}{hint}")
    if isinstance(plan, FreezePlan):
        if check:
            plan.check(model)
        names, bn_names = list(plan.parameter_names), list(plan.bn_modules) if plan.bn_mode == "freeze" else []
    else:
        names, bn_names = list(plan), []
        if not names:
            raise PlanError("empty freeze set")
        if not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"freeze() takes parameter names (strings), got {names[:3]!r}")
    params = dict(model.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise PlanError(f"the model has no parameter(s) {', '.join(unknown)}")
    modules = dict(model.named_modules())
    saved_flags = {n: params[n].requires_grad for n in names}
    saved_stats = {m: {k: v.detach().clone() for k, v in modules[m].named_buffers(recurse=False)} for m in bn_names}
    try:
        for n in names:
            params[n].requires_grad_(False)
            params[n].grad = None
        yield names
    finally:
        for n, flag in saved_flags.items():
            params[n].requires_grad_(flag)
        with torch.no_grad():
            for m, buffers in saved_stats.items():
                for k, v in buffers.items():
                    getattr(modules[m], k).copy_(v)


class FreezeSchedule:
    """Epoch-driven application of a plan for any training loop.

    >>> sched = FreezeSchedule(model, plan)          # checks the model once
    >>> for epoch in range(1, epochs + 1):
    ...     with sched.epoch(epoch):                  # frozen only in the plan's epochs
    ...         train_one_epoch(model)
    """

    def __init__(self, model: nn.Module, plan: FreezePlan) -> None:
        plan.check(model)
        self.model, self.plan = model, plan

    def is_frozen(self, epoch: int) -> bool:
        return self.plan.schedule.is_frozen(epoch)

    def epoch(self, epoch: int) -> contextlib.AbstractContextManager:
        if self.is_frozen(epoch):
            return freeze(self.model, self.plan, check=False)
        return contextlib.nullcontext([])
