"""Model names → modules, never downloading weights.

Resolution order for a bare name: rffsurgery's built-in models, torchvision,
then timm.  Prefixes force a source: ``torchvision:resnet50``, ``timm:resnet50``,
``rffsurgery:rff-base-cnn``; ``package.module:factory`` or ``path/to/file.py:factory``
call user code (a function or class, called with no arguments).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import InvalidArgument, RffError

__all__ = ["ModelNotFound", "ModelSpec", "build", "parse_size", "resolve"]

DEFAULT_INPUT = (3, 224, 224)


class ModelNotFound(RffError, LookupError):
    """The name matches no known model; the message lists close matches."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model name: how to build it and at what input size it is normally used."""

    name: str
    source: str
    builder: Callable[[], nn.Module]
    input_size: tuple[int, ...] = DEFAULT_INPUT

    def build(self, device: str = "cpu") -> nn.Module:
        """Construct with random (or, on ``"meta"``, unallocated) weights."""
        with torch.device(device):
            model = self.builder()
        return model.eval()


def _builtin(name: str) -> ModelSpec | None:
    from .models import BUILTIN

    entry = BUILTIN.get(name)
    if entry is None:
        return None
    factory, size = entry
    return ModelSpec(name, "rffsurgery", factory, size)


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models())


def _torchvision(name: str) -> ModelSpec | None:
    if name not in _torchvision_names():
        return None
    import torchvision

    builder = torchvision.models.get_model_builder(name)
    size = _torchvision_size(name)
    kwargs = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None  # segmentation/detection builders default to downloading it
    if name == "inception_v3" or name == "googlenet":
        kwargs["init_weights"] = False  # avoid the slow scipy-based init and its warning
        kwargs["aux_logits"] = False
    return ModelSpec(name, "torchvision", functools.partial(builder, **kwargs), size)


def _torchvision_size(name: str) -> tuple[int, ...]:
    """The weights' crop size; video models get their clip length (``clip_len`` in the weights' docs) too."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        crop = weights.transforms.keywords.get("crop_size")
    except (ValueError, AttributeError, TypeError):
        return DEFAULT_INPUT
    hw = (crop, crop) if isinstance(crop, int) else tuple(crop) if isinstance(crop, (tuple, list)) else DEFAULT_INPUT[1:]
    if name not in torchvision.models.list_models(module=torchvision.models.video):
        return (3, *hw)
    clip = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))
    frames = int(clip.group(1)) if clip else max(weights.meta.get("min_temporal_size", 16), 1)
    return (3, frames, *hw)


def parse_size(value: Any, default: tuple[int, ...] = DEFAULT_INPUT) -> tuple[int, ...]:
    """An input size of any rank, read against the model's default ``(C, *spatial)``.

    * a tuple/list, or text with commas — channels first, as given: ``1,16000``
      (1-D), ``3,224,224`` (2-D), ``3,16,112,112`` (3-D);
    * one number — the side of every image axis (H and W; a 1-D model's length),
      channels and a video's frame count from the default: ``224``;
    * numbers joined by ``x`` — the last spatial sizes, the rest from the default:
      ``224x192`` (H×W), ``16x112x112`` (T×H×W).  With one number more than the
      default has spatial axes, the first is the channel count (``3x224x224``).
    """
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        text = value.strip().replace("×", "x").replace("X", "x")
        if "," in text:
            return _given(text.split(","), value)
        value = [_number(p, value) for p in text.split("x")] if "x" in text else _number(text, value)
    if isinstance(value, int) and not isinstance(value, bool):
        spatial = default[1:]
        sides = len(spatial) if len(spatial) < 3 else 2  # a video keeps its frame count
        return (*default[: len(default) - sides], *(value,) * sides)
    if isinstance(value, list):  # from 'AxB' text
        if len(value) == len(default):
            return tuple(value)
        if len(value) > len(default) - 1:
            raise InvalidArgument(f"input size {'x'.join(map(str, value))!r} has more axes than the model's "
                                  f"{len(default) - 1}; give channels first with commas, e.g. 3,16,112,112")
        return (*default[: len(default) - len(value)], *value)
    return _given(value, value)


def _number(text: str, whole: Any) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidArgument(f"input size must be integers like 224, 224x192, 1,16000 or 3,224,224 "
                              f"(got {whole!r})") from None


def _given(parts: Any, whole: Any) -> tuple[int, ...]:
    size = tuple(_number(p, whole) if isinstance(p, str) else int(p) for p in parts if not isinstance(p, str) or p.strip())
    if len(size) < 2 or any(v < 1 for v in size):
        raise InvalidArgument(f"input size must be (channels, *spatial) with positive sizes, got {size}")
    return size


def _timm(name: str) -> ModelSpec | None:
    import timm

    if not timm.is_model(name):
        return None
    size = DEFAULT_INPUT
    cfg = timm.get_pretrained_cfg(name, allow_unregistered=True) if hasattr(timm, "get_pretrained_cfg") else None
    if cfg is not None and getattr(cfg, "input_size", None):
        size = tuple(cfg.input_size)
    return ModelSpec(name, "timm", functools.partial(timm.create_model, name, pretrained=False), size)


@functools.lru_cache(maxsize=None)
def _load_file(path: Path):
    """Load a user's .py file once, so a model and a leaf class named from it share one class object."""
    if not path.is_file():
        raise ModelNotFound(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def import_object(spec: str) -> object:
    """``package.module:Name`` or ``path/to/file.py:Name`` → the object (a factory, a class)."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ModelNotFound(f"expected 'package.module:name' or 'file.py:name', got {spec!r}")
    try:
        if where.endswith(".py"):
            module = _load_file(Path(where))
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise ModelNotFound(f"cannot import '{where}' for '{spec}': {exc}") from exc
    found = getattr(module, attr, None)
    if not callable(found):
        raise ModelNotFound(f"'{where}' has no callable '{attr}'")
    return found


def _user(spec: str) -> ModelSpec:
    factory = import_object(spec)
    size = tuple(getattr(factory, "default_input_size", DEFAULT_INPUT))
    return ModelSpec(spec, "user", factory, size)


_SOURCES = {"rffsurgery": _builtin, "torchvision": _torchvision, "timm": _timm}


def resolve(spec: str) -> ModelSpec:
    """Turn a model name into a :class:`ModelSpec` (see the module docstring for the forms)."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _SOURCES:
        found = _SOURCES[prefix](rest)
        if found is None:
            raise ModelNotFound(_not_found(rest, source=prefix))
        return found
    if sep:
        return _user(spec)
    for source in ("rffsurgery", "torchvision", "timm"):
        found = _SOURCES[source](spec)
        if found is not None:
            return found
    raise ModelNotFound(_not_found(spec))


def _not_found(name: str, source: str | None = None) -> str:
    from .models import BUILTIN

    candidates: list[str] = []
    if source in (None, "rffsurgery"):
        candidates += list(BUILTIN)
    if source in (None, "torchvision"):
        candidates += sorted(_torchvision_names())
    if source in (None, "timm"):
        import timm

        candidates += timm.list_models()
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=6, cutoff=0.6)
    where = f" in {source}" if source else " (searched rffsurgery, torchvision, timm)"
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return f"unknown model '{name}'{where}.{hint} User models: 'package.module:factory' or 'file.py:factory'."


def build(spec: str, device: str = "cpu") -> nn.Module:
    """Resolve and construct a model (random weights; nothing is downloaded)."""
    return resolve(spec).build(device)
