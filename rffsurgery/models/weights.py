"""Loading trained weights into a model without ever unpickling code.

Accepted: a ``state_dict`` file (``torch.load(..., weights_only=True)``; a dict
holding the tensors under ``state_dict`` or ``model`` is unwrapped), a
``.safetensors`` file, a rewrite output folder (``recipe.json`` + ``state_dict.pt``,
rebuilt by :func:`rffsurgery.surgery.recipe.load`) or a checkpoint of the bundled
trainer (its model; the output layer is resized to the checkpoint's classes, as the
trainer resized it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidArgument
from ..files import load_tensors
from ..formats import kind_of
from ..limits import NON_FINITE_WEIGHTS, require_finite
from ..surgery.recipe import RECIPE_FILE, load
from .given import require_module
from .head import find_head, make_head

__all__ = ["load_weights"]


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with the weights at ``path`` (see the module docstring); may return a rebuilt model."""
    model = require_module(model, "load_weights()")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument(f"weights are given by the path of a file or rewrite folder, got {type(path).__name__}")
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidArgument(f"weights {path} do not exist; give a state_dict, .safetensors, checkpoint or rewrite folder")
    if path.is_dir():
        if not (path / RECIPE_FILE).exists():
            raise InvalidArgument(f"{path} is a folder without {RECIPE_FILE}: give a rewrite output folder or a file")
        return load(path, base=model)
    if path.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise InvalidArgument("reading .safetensors needs the safetensors package: pip install safetensors") from None

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise InvalidArgument(f"{path} is not a readable safetensors file ({exc})") from None
        return _load_state(model, state, path)
    data = load_tensors(path, InvalidArgument, "weights", "Give a state_dict of tensors (torch.save(model.state_dict(), "
                        "path)), a .safetensors file, a trainer checkpoint or a rewrite folder.")
    if kind_of(data) == "train-checkpoint":
        return _load_state(_resize_head(model, data["model"]), data["model"], path)
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} holds a {type(data).__name__}, not a state_dict of tensors")
    return _load_state(model, data, path)


def _resize_head(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """The trainer gave the output layer its own classes (``Dropout → Linear`` with dropout): do the same."""
    path = find_head(model)
    wrapped = f"{path}.1.weight" in state
    weight = state.get(f"{path}.1.weight" if wrapped else f"{path}.weight")
    if weight is not None and weight.dim() == 2:
        model.set_submodule(path, make_head(weight.shape[1], weight.shape[0], 0.5 if wrapped else 0.0))
    return model


def _load_state(model: nn.Module, state: dict[str, Any], path: Path) -> nn.Module:
    require_finite(state.items(), f"weights {path}", NON_FINITE_WEIGHTS, InvalidArgument)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()
        raise InvalidArgument(f"weights {path} do not fit {type(model).__name__}: "
                              f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    problems = [f"{len(keys)} {kind} (e.g. {', '.join(list(keys)[:3])})"
                for kind, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)) if keys]
    if problems:
        raise InvalidArgument(f"weights {path} do not fit {type(model).__name__}: {'; '.join(problems)} keys; "
                              "check the model name and input options")
    return model
