"""Freeze plans: a versioned JSON document saying which parameters to freeze, and when.

A plan is built from an analysis (``build_freeze_plan(analyze(model))``), written
with :meth:`FreezePlan.export`, read back with :meth:`FreezePlan.load` (which
validates every field and refuses files from another schema), and checked against a
model by the fingerprint of the graph up to the frozen layers (so a resized or
replaced classifier does not matter, see :mod:`.fingerprint`).  Applying it is
:mod:`.apply`'s job.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .._version import __version__
from ..analysis.result import Plan, require_plan
from ..errors import InvalidArgument, RffError
from ..files import prepare_output, write_text
from ..formats import read_stamp, stamp
from ..limits import check
from ..models.given import require_module
from ..models.onnx_file import OnnxModel
from ..models.zoo import parse_size
from ..tags import tag
from ..trace.capture import capture
from ..trace.tracer import TraceError
from .fingerprint import digest, first_difference, graph_lines
from .wrappers import candidates, describe

__all__ = ["BN_MODES", "DEFAULT_SCHEDULE", "FreezePlan", "PlanError", "Schedule", "build_freeze_plan", "some_names"]

log = logging.getLogger(__name__)

KIND = "freeze-plan"
CAPTURES = ("fx", "export", "onnx")
SCHEMA_VERSION = 2  # 2: the fingerprint covers the graph up to the frozen layers, listed in model.graph
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
        for epoch in self.epochs:
            check("epoch", epoch, PlanError, "each schedule epoch", required=True)
        check("every", self.every, PlanError, "schedule 'every'")
        check("start", self.start, PlanError, "schedule 'start'", required=True)
        check("stop", self.stop, PlanError, "schedule 'stop'")
        if self.stop is not None and self.stop < self.start:
            raise PlanError(f"schedule 'stop' must be an integer ≥ start ({self.start}), got {self.stop}")

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
    graph: tuple[str, ...]  # signature lines of the frozen nodes and their ancestors (rffsurgery.fingerprint)
    schedule: Schedule = DEFAULT_SCHEDULE
    bn_mode: str = "train"
    bn_modules: tuple[str, ...] = ()
    capture: str = "fx"  # how the graph was captured (fx, export, onnx): a check captures the model the same way
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
        if self.capture not in CAPTURES:
            raise PlanError(f"unknown capture {self.capture!r}; a plan's graph is captured by {', '.join(CAPTURES)}")
        if digest(self.graph) != self.fingerprint:
            raise PlanError("the model graph listed in the plan does not match its fingerprint (edited by hand?); "
                            "re-create the plan with rffsurgery analyze MODEL --export-plan")

    @property
    def frozen_nodes(self) -> tuple[str, ...]:
        """The graph nodes whose parameters the plan freezes: the tagged layers and, per ``bn_mode``, BatchNorms."""
        return tuple(dict.fromkeys([*(t["node"] for t in self.tagged), *self.bn_modules]))

    @property
    def kept_statistics(self) -> tuple[str, ...]:
        """BatchNorm modules whose running statistics a frozen block restores (``bn_mode="freeze"``)."""
        return self.bn_modules if self.bn_mode == "freeze" else ()

    # -- JSON ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            **stamp(KIND, SCHEMA_VERSION, self.tool_version),
            "model": {"name": self.model_name, "class": self.model_class, "capture": self.capture,
                      "fingerprint": self.fingerprint, "graph": list(self.graph)},
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
        if not isinstance(path, (str, os.PathLike)):
            raise PlanError(f"FreezePlan.load takes the path of a plan file, got {type(path).__name__}"
                            + ("; for a dict use FreezePlan.from_dict" if isinstance(path, dict) else ""))
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
        except ValueError:  # an integer longer than Python converts (4300 digits)
            raise PlanError(f"{path} holds a number too long to be a plan field") from None
        except RecursionError:
            raise PlanError(f"{path} is nested too deeply to be a freeze plan") from None
        try:
            return cls.from_dict(data)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> "FreezePlan":
        version = read_stamp(data, KIND, SCHEMA_VERSION, PlanError, "a freeze plan")
        if version == 1:
            name = data["model"].get("name", "MODEL") if isinstance(data.get("model"), dict) else "MODEL"
            raise PlanError(f"a schema v1 plan fingerprints the whole graph, classifier included, and is no longer "
                            f"read; re-create it: rffsurgery analyze {name} --export-plan PLAN.json (same policy and "
                            f"schedule options)")
        model = _get(data, "model", dict)
        policy = _get(data, "policy", dict)
        freeze_ = _get(data, "freeze", dict)
        bn = _get(freeze_, "batchnorm", dict)
        tagged = _get(data, "tagged", list)
        if not all(isinstance(t, dict) and isinstance(t.get("node"), str) for t in tagged):
            raise PlanError("'tagged' must be a list of objects with a 'node' name")
        size = _get(data, "input_size", list)
        try:
            size = parse_size(size)
        except InvalidArgument as exc:
            raise PlanError(f"'input_size': {exc}") from None
        return cls(
            model_name=_get(model, "name", str),
            model_class=_get(model, "class", str),
            fingerprint=_get(model, "fingerprint", str),
            input_size=tuple(size),
            policy=_get(policy, "name", str),
            policy_options=_get(policy, "options", dict),
            tagged=tuple(tagged),
            parameter_names=tuple(_str_list(freeze_, "parameters")),
            graph=tuple(_str_list(model, "graph")),
            schedule=Schedule.from_dict(data.get("schedule")),
            bn_mode=_get(bn, "mode", str),
            bn_modules=tuple(_str_list(bn, "modules")),
            capture=model.get("capture", "fx") if isinstance(model.get("capture", "fx"), str) else "",
            tool_version=str(_get(data, "tool", dict).get("version", "")),
        )

    # -- checks ---------------------------------------------------------------
    def check(self, model: nn.Module) -> str:
        """Refuse a model this plan was not made for; returns the path of the planned network inside ``model``.

        ``""`` when ``model`` is that network; ``"module"`` inside DDP/DataParallel,
        ``"_orig_mod"`` inside a ``torch.compile`` result, ``"net"`` for a module holding it as ``self.net``.
        """
        return self.locate(model)[0]

    def locate(self, model: nn.Module, check: bool = True) -> tuple[str, nn.Module]:
        """The planned network inside ``model`` (itself or a submodule, breadth-first), and its path.

        A candidate must hold every planned parameter (a cheap name check) and, with
        ``check``, have the plan's fingerprint; without ``check`` the first candidate
        holding the parameters is taken.  ``model`` may be what ``rewrite()`` returns (its rewritten model).
        """
        model = require_module(model, "a freeze plan")
        if (self.capture == "onnx") != isinstance(model, OnnxModel):
            made, given = ("an ONNX file", "a PyTorch model") if self.capture == "onnx" else ("a PyTorch model",
                                                                                               "an ONNX file")
            raise PlanError(f"the plan for {self.model_name} was made from {made}'s graph and this is {given}; "
                            "check it against the model it was made from")
        found = candidates(model, self.parameter_names)
        if not found:
            params = {n for n, _ in model.named_parameters()}
            missing = [n for n in self.parameter_names if n not in params]
            hint = "" if len(list(model.modules())) == 1 else ", nor does any of its submodules"
            raise PlanError(f"the model has no parameter(s) {some_names(missing)} named in the plan for {self.model_name}"
                            f"{hint}; pass the network the plan was made for (e.g. model.net)")
        refusals = []
        for path, module in found if check else found[:1]:
            reason = self._mismatch(module) if check else None
            if reason is None:
                if path:
                    log.info("freeze plan for %s applies to %s", self.model_name, describe(model, path))
                return path, module
            refusals.append((path, reason))
        if len(refusals) == 1 and not refusals[0][0]:
            raise PlanError(f"the model does not match the plan for {self.model_name} ({self.model_class}): "
                            f"{refusals[0][1]}; re-create the plan from this model (rffsurgery analyze MODEL "
                            f"[--num-classes N] --export-plan)")
        tried = "; ".join(f"{describe(model, path)}: {reason}" for path, reason in refusals)
        raise PlanError(f"no submodule of {type(model).__name__} matches the plan for {self.model_name}: tried "
                        f"{tried}; pass the network the plan was made for (e.g. model.net)")

    def _mismatch(self, network: nn.Module) -> str | None:
        """Why ``network`` is not the one this plan was made for (``None`` when it is)."""
        modules = dict(network.named_modules())
        bad_bn = [m for m in self.bn_modules if not isinstance(modules.get(m), nn.modules.batchnorm._BatchNorm)]
        if bad_bn:
            return f"the plan's BatchNorm module(s) {some_names(bad_bn)} are not BatchNorm layers of this model"
        try:
            how = "export" if self.capture == "export" else "fx"
            lines, missing = graph_lines(capture(network, input_shape=(1, *self.input_size), how=how), self.frozen_nodes)
        except TraceError as exc:
            return f"it cannot be traced ({str(exc).splitlines()[0]})"
        if missing:
            return f"its graph has no node(s) {some_names(missing)} that the plan freezes"
        if digest(lines) != self.fingerprint:
            return f"the graph up to the frozen layers differs: {first_difference(self.graph, lines)}"
        return None

    def describe(self) -> str:
        """A readable summary (``rffsurgery plan show``)."""
        lines = [
            f"freeze plan v{SCHEMA_VERSION} for {self.model_name} ({self.model_class}), made by rffsurgery {self.tool_version}",
            f"  fingerprint  {self.fingerprint} (graph up to the frozen layers: {len(self.graph)} nodes)",
            f"  input size   {'x'.join(map(str, self.input_size))}",
            f"  capture      {self.capture}",
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


def some_names(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" … ({len(names)} in all)" if len(names) > n else "")


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
def build_freeze_plan(analysis: Plan, policy: str = "paper", schedule: Schedule | None = None, bn: str = "train",
                      **options: Any) -> FreezePlan:
    """Tag ``analysis`` (an :func:`~rffsurgery.analyze` result) with ``policy`` and turn the tags into a plan.

    ``options`` go to the policy (:func:`rffsurgery.tags.tag`); ``schedule`` defaults to
    every 2nd epoch from epoch 2; ``bn`` is one of :data:`BN_MODES`.
    """
    require_plan(analysis, "build_freeze_plan()", PlanError)
    if schedule is not None and not isinstance(schedule, Schedule):
        raise PlanError(f"schedule must be a Schedule (e.g. Schedule(epochs=(5,))), got {type(schedule).__name__}")
    if bn not in BN_MODES:
        raise PlanError(f"unknown BatchNorm mode {bn!r}; choose one of {', '.join(BN_MODES)}")
    tags = tag(analysis, policy, **options)
    params: list[str] = []
    bn_modules: list[str] = []
    tagged = []
    modules = dict(analysis.model.named_modules())
    for t in tags:
        layer = analysis.layers[t.name]
        params += layer.params
        tagged.append({"node": t.name, "op": layer.op, "rf": _jsonable(layer.rf),
                       "stride": _jsonable(layer.stride), "padding": _jsonable(layer.padding), "reason": t.reason})
        if bn != "train":
            follower = _following_batchnorm(analysis, t.name, modules)
            if follower is not None:
                bn_modules.append(follower)
                params += analysis.layers[follower].params
    graph, _ = graph_lines(analysis.traced, [*(t.name for t in tags), *bn_modules])
    return FreezePlan(
        model_name=analysis.model_name,
        model_class=f"{type(analysis.model).__module__}.{type(analysis.model).__qualname__}",
        fingerprint=digest(graph),
        input_size=tuple(analysis.input_size),
        policy=policy,
        policy_options={k: list(v) if isinstance(v, (tuple, list)) else v for k, v in options.items()},
        tagged=tuple(tagged),
        parameter_names=tuple(dict.fromkeys(params)),
        graph=graph,
        schedule=schedule or DEFAULT_SCHEDULE,
        bn_mode=bn,
        bn_modules=tuple(bn_modules),
        capture=analysis.capture,
    )


def _jsonable(values: Sequence[Any]) -> list[Any]:
    out = []
    for v in values:
        if v is None or isinstance(v, (int, str)):
            out.append(v)
        else:  # Fraction
            out.append(int(v) if v.denominator == 1 else f"{v.numerator}/{v.denominator}")
    return out


def _following_batchnorm(analysis: Plan, name: str, modules: dict[str, nn.Module]) -> str | None:
    """The BatchNorm node that consumes the tagged layer's output directly, if any.

    A traced BatchNorm calls its module; a torch.export capture names its batch_norm node by the module's path.
    """
    for layer in analysis:
        path = layer.target if layer.kind == "call_module" else layer.name
        if layer.inputs[:1] == (name,) and isinstance(modules.get(path), nn.modules.batchnorm._BatchNorm):
            return layer.name
    return None
