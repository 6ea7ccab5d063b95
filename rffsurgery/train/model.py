"""Models for the protocol: any zoo name, with the output layer sized for the classes at hand.

The *head* is the classifier :func:`rffsurgery.models.head.find_head` finds on the graph
(``classifier.3`` in the base CNN, ``fc`` in ResNet50, ``head.fc`` in timm models), the
same layer a rewrite treats as the classifier.  The base step resizes it for the base
classes; the transfer step swaps in a fresh one for the transfer classes.  With
``dropout > 0`` the head becomes ``Sequential(Dropout(p), Linear)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..limits import NON_FINITE_WEIGHTS, require_finite
from ..models.head import NoHeadError, find_head, make_head
from ..models.zoo import ModelNotFound, resolve
from ..surgery import rewrite as apply_rewrite
from ..surgery.recipe import RECIPE_FILE, Recipe, load

__all__ = ["build_model", "model_input_size"]


def _rewrite_folder(name: str) -> Path | None:
    """``name`` as a ``rffsurgery rewrite --out`` folder, ``None`` when it is a model name."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return None
    if not (path / RECIPE_FILE).is_file():
        raise ModelNotFound(f"{name} is a folder without {RECIPE_FILE}: --model takes a model name or a folder "
                            "written by 'rffsurgery rewrite --out DIR'")
    return path


def model_input_size(name: str) -> tuple[int, ...]:
    """The input size ``name`` is normally used at: the zoo's, or the one recorded in a rewrite recipe."""
    folder = _rewrite_folder(name)
    if folder is None:
        return tuple(resolve(name).input_size)
    return tuple(Recipe.from_dict(json.loads((folder / RECIPE_FILE).read_text())).input_size)


def build_model(name: str, num_classes: int, dropout: float = 0.0,
                rewrite: dict[str, Any] | None = None) -> tuple[nn.Module, str, tuple[int, ...]]:
    """Build ``name`` on CPU with a ``num_classes`` head; returns the model, its head path and input size.

    ``name`` is a zoo name or a ``rffsurgery rewrite --out`` folder, whose recipe is replayed
    and whose weights are loaded (tensors only, ``weights_only=True``) before the head is resized.
    ``rewrite``: keyword arguments of :func:`rffsurgery.surgery.rewrite`, applied after the
    head is sized (the head found afterwards is the rewritten model's classifier).
    """
    folder = _rewrite_folder(name)
    model = resolve(name).build("cpu") if folder is None else load(folder)
    require_finite(model.state_dict().items(), f"the initial weights of {name}", NON_FINITE_WEIGHTS)
    path = _head(model, name)
    model.set_submodule(path, make_head(model.get_submodule(path).in_features, num_classes, dropout))
    size = model_input_size(name)
    if rewrite:
        model = apply_rewrite(model, input_size=size, **rewrite).after
        path = _head(model, name)
    return model, path, size


def _head(model: nn.Module, name: str) -> str:
    try:
        return find_head(model)
    except NoHeadError as exc:
        raise NoHeadError(f"{name}: {exc}; the trainer resizes that layer for the classes of each stage") from None

