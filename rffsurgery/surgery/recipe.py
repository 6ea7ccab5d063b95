"""Rewrite recipes: what was done to which model, as JSON, so the architecture can be rebuilt.

A rewritten model is saved as two files a user can load without unpickling
code: ``recipe.json`` (the base model's zoo name, the input size and the rewrite
steps with resolved module paths) and ``state_dict.pt`` (tensors only, read
with ``torch.load(..., weights_only=True)``).  :func:`load` builds the base model,
replays the steps and loads the weights.  Steps name layers by path, so replaying
never depends on head detection or default selection.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..analysis.analyzer import declared_input_size, parse_input_size
from ..errors import InvalidArgument, first_line
from ..files import atomic_output, check_folder, load_tensors, prepare_folder, prepare_output, write_text
from ..formats import read_stamp, stamp
from ..limits import NON_FINITE_WEIGHTS, check, require_finite
from ..models.given import require_module
from ..models.zoo import build, parse_size, resolve
from . import conv3d, head
from .select import Change, RewriteError, Skip, count_params

__all__ = ["RECIPE_FILE", "Recipe", "Rewritten", "WEIGHTS_FILE", "check_save", "load", "rebuild", "rewrite", "save"]

KIND, VERSION = "recipe", 1
RECIPE_FILE = "recipe.json"
WEIGHTS_FILE = "state_dict.pt"
_STEPS: dict[str, Callable[[nn.Module, dict[str, Any]], list[Change]]] = {
    head.STEP: head.apply_step,
    conv3d.STEP: conv3d.apply_step,
}


@dataclass
class Recipe:
    """The base model (zoo name, or ``None`` for a module built in Python), input size and steps."""

    model: str | None
    input_size: tuple[int, ...]
    steps: list[dict[str, Any]] = field(default_factory=list)
    parameters: int | None = None  # of the rewritten model: a check when loading

    def to_dict(self) -> dict[str, Any]:
        return {**stamp(KIND, VERSION), "model": self.model,
                "input_size": list(self.input_size), "parameters": self.parameters, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        read_stamp(data, KIND, VERSION, RewriteError, "a rewrite recipe")
        steps, size = data.get("steps"), data.get("input_size")
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise RewriteError("'steps' must be a list of rewrite steps")
        if not isinstance(size, list):
            raise RewriteError(f"'input_size' must be a list of positive integers, got {type(size).__name__}")
        try:
            size = parse_size(size)
        except InvalidArgument as exc:
            raise RewriteError(f"'input_size': {exc}") from None
        parameters = data.get("parameters")
        if parameters is not None and (not isinstance(parameters, int) or isinstance(parameters, bool)
                                       or parameters < 0):
            raise RewriteError(f"'parameters' must be a parameter count or null, got {type(parameters).__name__}")
        if not isinstance(data.get("model"), (str, type(None))):
            raise RewriteError("'model' must be a model name or null")
        unknown = [s.get("rewrite") for s in data["steps"] if s.get("rewrite") not in _STEPS]
        if unknown:
            raise RewriteError(f"unknown rewrite step(s) {unknown}; this rffsurgery knows {sorted(_STEPS)}")
        return cls(data["model"], size, data["steps"], data.get("parameters"))


@dataclass
class Rewritten:
    """A model before and after its rewrites, with what changed and the recipe to rebuild it."""

    before: nn.Module
    after: nn.Module
    recipe: Recipe
    changes: list[Change]
    skipped: list[Skip]

    @property
    def input_size(self) -> tuple[int, ...]:
        return self.recipe.input_size

    def as_module(self) -> nn.Module:
        """The rewritten model: what ``freeze``, ``analyze``, ``erf`` and ``export_onnx`` use when given this result."""
        return self.after


def rewrite(model: nn.Module | str, *, input_size: Any = None, meta_groups: int | None = None,
            meta_out: int | None = None, hidden: int | None = None, head_layers: Iterable[str] | None = None,
            init: str = "random", meta_init: str = "identity", conv3d_filters: int | None = None,
            conv3d_layers: Iterable[str] | None = None) -> Rewritten:
    """Apply the head rewrite (``meta_groups``) and/or the Conv3d rewrite (``conv3d_filters``).

    ``model`` is a module (left untouched) or a zoo name (built on CPU with random
    weights).  The keyword arguments are those of
    :func:`~rffsurgery.surgery.head.rewrite_head` and
    :func:`~rffsurgery.surgery.conv3d.rewrite_conv3d`.
    """
    meta_groups, meta_out = check("meta_groups", meta_groups), check("meta_out", meta_out)
    hidden, conv3d_filters = check("hidden", hidden), check("conv3d_filters", conv3d_filters)
    if meta_groups is None and conv3d_filters is None:
        raise RewriteError("nothing to rewrite: give meta_groups (FC head) and/or conv3d_filters (Conv2d)")
    if meta_groups is None and (meta_out is not None or hidden is not None or head_layers):
        raise InvalidArgument("meta_out, hidden and head_layers shape the head rewrite: give meta_groups too")
    if conv3d_filters is None and conv3d_layers:
        raise InvalidArgument("conv3d_layers chooses layers for the Conv3d rewrite: give conv3d_filters too")
    if not isinstance(model, str):
        model = require_module(model, "rewrite()")
    if isinstance(model, str):
        spec = resolve(model)
        name, before, default = model, spec.build("cpu"), spec.input_size
    else:
        name, before, default = None, model, (3, 224, 224)
    size = parse_input_size(input_size, declared_input_size(before) or default)  # as analyze chooses it
    after = copy.deepcopy(before)
    results = []
    if meta_groups is not None:
        results.append(head.rewrite_head(after, meta_groups, meta_out=meta_out, hidden=hidden, layers=head_layers,
                                         init=init, meta_init=meta_init, inplace=True, input_size=size))
    if conv3d_filters is not None:
        results.append(conv3d.rewrite_conv3d(after, conv3d_filters, layers=conv3d_layers, inplace=True,
                                             input_size=size))
    recipe = Recipe(name, size, [r.step for r in results], count_params(after))
    return Rewritten(before, after, recipe, [c for r in results for c in r.changes],
                     [s for r in results for s in r.skipped])


def rebuild(recipe: Recipe | dict[str, Any] | str | Path, base: nn.Module | None = None) -> nn.Module:
    """The rewritten architecture (fresh weights): ``base`` (or the recipe's zoo model) with the steps replayed.

    ``base`` is modified in place; it is required when the recipe has no model name.
    """
    recipe = _recipe(recipe)
    if base is None:
        if recipe.model is None:
            raise RewriteError("the recipe was made from a module built in Python: pass that model as base=")

        base = build(recipe.model)
    for number, step in enumerate(recipe.steps, 1):
        try:
            _STEPS[step["rewrite"]](base, step)
        except Exception as exc:  # noqa: BLE001 - a missing layer, a wrong size: another model than the recipe's
            made_from = f"'{recipe.model}'" if recipe.model else "a module built in Python"
            raise RewriteError(f"the rewrite recipe was made from {made_from}; its step {number} ({step['rewrite']}) "
                               f"does not apply to {type(base).__name__} ({type(exc).__name__}: {first_line(exc)}): "
                               f"use it with the model it was made from") from None
    return base


def check_save(out_dir: str | Path, *, force: bool = False, reading: Iterable[str | Path] = ()) -> Path:
    """Check that :func:`save` can write into ``out_dir`` without replacing files unasked; returns it as a Path.

    ``out_dir`` may be missing (it is created, with its parents), but not a file;
    ``recipe.json`` and ``state_dict.pt`` in it are replaced only with ``force``, and
    never when they are among the files being read.
    """
    out = check_folder(out_dir, option="--out")
    for name in (RECIPE_FILE, WEIGHTS_FILE) if out.is_dir() else ():
        prepare_output(out / name, force=force, option="--out", reading=reading)
    return out


def save(rewritten: Rewritten, out_dir: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``recipe.json`` and ``state_dict.pt`` into ``out_dir`` (created); returns both paths.

    Both files are written atomically; existing ones are replaced only with ``force``.
    """
    out = prepare_folder(check_save(out_dir, force=force), option="--out")
    recipe_path, weights_path = out / RECIPE_FILE, out / WEIGHTS_FILE
    with atomic_output(weights_path) as tmp:
        torch.save(rewritten.after.state_dict(), tmp)
    write_text(recipe_path, json.dumps(rewritten.recipe.to_dict(), indent=2) + "\n")
    return recipe_path, weights_path


def load(out_dir: str | Path, base: nn.Module | None = None) -> nn.Module:
    """Rebuild the architecture from ``out_dir``'s recipe and load its state_dict (``weights_only=True``)."""
    out = Path(out_dir)
    recipe = _recipe(out / RECIPE_FILE)
    model = rebuild(recipe, base)
    if recipe.parameters is not None and count_params(model) != recipe.parameters:
        raise RewriteError(f"rebuilt model has {count_params(model):,} parameters, the recipe says "
                           f"{recipe.parameters:,}: the base model differs from the one rewritten")
    state = load_tensors(out / WEIGHTS_FILE, RewriteError, "weights file",
                         "Save the rewritten model again (rffsurgery rewrite … --out).")
    if not isinstance(state, dict):
        raise RewriteError(f"{out / WEIGHTS_FILE} holds a {type(state).__name__}, not a state_dict")
    require_finite(state.items(), f"weights {out / WEIGHTS_FILE}", NON_FINITE_WEIGHTS, RewriteError)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RewriteError(f"{out / WEIGHTS_FILE} does not fit the rebuilt model: "
                           f"{' '.join(str(exc).split())[:300]}") from None
    return model


def _recipe(value: Recipe | dict[str, Any] | str | Path) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if isinstance(value, dict):
        return Recipe.from_dict(value)
    path = Path(value)
    if path.is_dir():
        path = path / RECIPE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RewriteError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, an integer of thousands of digits
        raise RewriteError(f"{path} is not a valid recipe (corrupt JSON: {type(exc).__name__}); "
                           "save the rewritten model again") from None
    try:
        return Recipe.from_dict(data)
    except RewriteError as exc:
        raise RewriteError(f"{path}: {exc}") from None
