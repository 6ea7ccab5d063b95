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

from .. import __version__
from ..analysis import declared_input_size, parse_input_size
from . import conv3d, head
from .select import Change, RewriteError, Skip, count_params

__all__ = ["RECIPE_FILE", "Recipe", "Rewritten", "WEIGHTS_FILE", "load", "rebuild", "rewrite", "save"]

SCHEMA = "rffsurgery.recipe/1"
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
        return {"schema": SCHEMA, "rffsurgery": __version__, "model": self.model,
                "input_size": list(self.input_size), "parameters": self.parameters, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        if data.get("schema") != SCHEMA:
            raise RewriteError(f"not a rewrite recipe (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        unknown = [s.get("rewrite") for s in data["steps"] if s.get("rewrite") not in _STEPS]
        if unknown:
            raise RewriteError(f"unknown rewrite step(s) {unknown}; this rffsurgery knows {sorted(_STEPS)}")
        return cls(data["model"], tuple(data["input_size"]), data["steps"], data.get("parameters"))


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
    if meta_groups is None and conv3d_filters is None:
        raise RewriteError("nothing to rewrite: give meta_groups (FC head) and/or conv3d_filters (Conv2d)")
    if isinstance(model, str):
        from ..zoo import resolve

        spec = resolve(model)
        name, before, default = model, spec.build("cpu"), spec.input_size
    else:
        name, before, default = None, model, (3, 224, 224)
    size = parse_input_size(input_size, declared_input_size(before) or default)  # as analyze chooses it
    after = copy.deepcopy(before)
    results = []
    if meta_groups is not None:
        results.append(head.rewrite_head(after, meta_groups, meta_out=meta_out, hidden=hidden, layers=head_layers,
                                         init=init, meta_init=meta_init, inplace=True))
    if conv3d_filters is not None:
        results.append(conv3d.rewrite_conv3d(after, conv3d_filters, layers=conv3d_layers, inplace=True))
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
        from ..zoo import build

        base = build(recipe.model)
    for step in recipe.steps:
        _STEPS[step["rewrite"]](base, step)
    return base


def save(rewritten: Rewritten, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``recipe.json`` and ``state_dict.pt`` into ``out_dir`` (created); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe_path, weights_path = out / RECIPE_FILE, out / WEIGHTS_FILE
    recipe_path.write_text(json.dumps(rewritten.recipe.to_dict(), indent=2) + "\n")
    torch.save(rewritten.after.state_dict(), weights_path)
    return recipe_path, weights_path


def load(out_dir: str | Path, base: nn.Module | None = None) -> nn.Module:
    """Rebuild the architecture from ``out_dir``'s recipe and load its state_dict (``weights_only=True``)."""
    out = Path(out_dir)
    recipe = _recipe(out / RECIPE_FILE)
    model = rebuild(recipe, base)
    if recipe.parameters is not None and count_params(model) != recipe.parameters:
        raise RewriteError(f"rebuilt model has {count_params(model):,} parameters, the recipe says "
                           f"{recipe.parameters:,}: the base model differs from the one rewritten")
    model.load_state_dict(torch.load(out / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model


def _recipe(value: Recipe | dict[str, Any] | str | Path) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if isinstance(value, dict):
        return Recipe.from_dict(value)
    path = Path(value)
    if path.is_dir():
        path = path / RECIPE_FILE
    return Recipe.from_dict(json.loads(path.read_text()))
