"""Models for the protocol: any zoo name, with the output layer sized for the classes at hand.

The *head* is the model's last ``nn.Linear`` (``classifier.3`` in the base CNN, ``fc`` in
ResNet50, ``head.fc`` in timm models).  The base step resizes it for the base classes;
the transfer step swaps in a fresh one for the transfer classes.  With ``dropout > 0``
the head becomes ``Sequential(Dropout(p), Linear)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidArgument

__all__ = ["build_model", "find_head", "head_in_features", "make_head", "model_input_size", "set_module"]


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def find_head(model: nn.Module) -> str:
    """Module path of the last ``nn.Linear``; ``ValueError`` when the model has none."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidArgument(f"{type(model).__name__} has no nn.Linear output layer to resize for the classes")
    return linears[-1]


def make_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """A fresh output layer (PyTorch's default initialisation from the global generator)."""
    linear = nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


def head_in_features(model: nn.Module, path: str) -> int:
    head = model.get_submodule(path)
    linear = head if isinstance(head, nn.Linear) else head[-1]
    return linear.in_features


def _rewrite_folder(name: str) -> Path | None:
    """``name`` as a ``rffsurgery rewrite --out`` folder, ``None`` when it is a model name."""
    from ..surgery.recipe import RECIPE_FILE
    from ..zoo import ModelNotFound

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
        from ..zoo import resolve

        return tuple(resolve(name).input_size)
    import json

    from ..surgery.recipe import RECIPE_FILE, Recipe

    return tuple(Recipe.from_dict(json.loads((folder / RECIPE_FILE).read_text())).input_size)


def build_model(name: str, num_classes: int, dropout: float = 0.0,
                rewrite: dict[str, Any] | None = None) -> tuple[nn.Module, str, tuple[int, ...]]:
    """Build ``name`` on CPU with a ``num_classes`` head; returns the model, its head path and input size.

    ``name`` is a zoo name or a ``rffsurgery rewrite --out`` folder, whose recipe is replayed
    and whose weights are loaded (tensors only, ``weights_only=True``) before the head is resized.
    ``rewrite``: keyword arguments of :func:`rffsurgery.surgery.rewrite`, applied after the
    head is sized (the head found afterwards is the rewritten model's last Linear).
    """
    folder = _rewrite_folder(name)
    if folder is None:
        from ..zoo import resolve

        model = resolve(name).build("cpu")
    else:
        from ..surgery.recipe import load

        model = load(folder)
    path = find_head(model)
    set_module(model, path, make_head(model.get_submodule(path).in_features, num_classes, dropout))
    size = model_input_size(name)
    if rewrite:
        from ..surgery import rewrite as apply_rewrite

        model = apply_rewrite(model, input_size=size, **rewrite).after
        path = find_head(model)
    return model, path, size

