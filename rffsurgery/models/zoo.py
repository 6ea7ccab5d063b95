"""Model names → modules, never downloading weights.

Resolution order for a bare name: rffsurgery's built-in models, torchvision,
then timm.  Prefixes force a source: ``torchvision:resnet50``, ``timm:resnet50``,
``rffsurgery:rff-base-cnn``; ``package.module:factory`` or ``path/to/file.py:factory``
call user code (a function or class, called with no arguments); a name ending in
``.onnx`` is an ONNX file (:mod:`.onnx_file`: analysed from its graph, never run).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import InvalidArgument, RffError, brief
from ..limits import check
from ..usercode import UserCodeError, user_code
from .builtin import BUILTIN
from .onnx_file import data_files, is_onnx_file, load_onnx, onnx_input

__all__ = ["ModelNotFound", "ModelSpec", "build", "parse_size", "resolve"]

DEFAULT_INPUT = (3, 224, 224)
MAX_INPUT_ELEMENTS = 2**40


class ModelNotFound(RffError, LookupError):
    """The name matches no known model; the message lists close matches."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model name: how to build it and at what input size it is normally used."""

    name: str
    source: str
    builder: Callable[[], nn.Module]
    input_size: tuple[int, ...] = DEFAULT_INPUT

    def build(self, device: str = "cpu", num_classes: int | None = None) -> nn.Module:
        """Construct with random (or, on ``"meta"``, unallocated) weights; ``num_classes`` sizes the head.

        A user factory that exits, fails, or returns something other than an ``nn.Module``
        raises :class:`~rffsurgery.usercode.UserCodeError` naming the factory.
        """
        if self.source == "onnx":
            return self._onnx(device, num_classes)
        kwargs = {} if num_classes is None else {"num_classes": self._checked_num_classes(num_classes)}
        if self.source != "user":
            try:
                return self._construct(device, kwargs).eval()
            except TypeError as exc:  # a **kwargs builder whose model class has no num_classes
                if not kwargs:
                    raise
                raise InvalidArgument(f"{self.name} cannot be built with num_classes={num_classes}: {exc}") from None
        if not kwargs:
            _check_no_arguments(self.name, self.builder)
        with user_code(f"your model factory '{self.name}'",
                       "fix it so that calling it with no arguments returns the model"):
            model = self._construct(device, kwargs)
        if not isinstance(model, nn.Module):
            raise UserCodeError(f"your model factory '{self.name}' returned {type(model).__name__} "
                                f"{brief(model)}, not an nn.Module; name a function or class that returns the model")
        return model.eval()

    def _onnx(self, device: str, num_classes: int | None) -> nn.Module:
        """An ONNX file's graph and meta initializers; it cannot be resized, run, rewritten or trained."""
        if num_classes is not None:
            raise InvalidArgument(f"{self.name} is an ONNX file with its own classifier: --num-classes applies to "
                                  "PyTorch models")
        if device != "meta":
            raise InvalidArgument(f"{self.name} is an ONNX file: rffsurgery analyses ONNX graphs (analyze, plan "
                                  "check) but does not run, rewrite or train them; use the PyTorch model")
        return self.builder()

    def _construct(self, device: str, kwargs: dict[str, Any]) -> Any:
        """Call the builder with new tensors on ``device``.

        On the meta device weight initialisers are skipped.  A constructor that computes
        its configuration with tensors (torchvision's RegNet: ``torch.arange(…).tolist()``)
        fails when every new tensor is meta; it is built again with those computations on
        CPU and each parameter and buffer moved to meta as it is registered.
        """
        if device != "meta":
            with torch.device(device):
                return self.builder(**kwargs)
        try:
            with torch.device("meta"), _NoInitOnMeta():
                return self.builder(**kwargs)
        except Exception:
            with _registered_on_meta(), _NoInitOnMeta():
                return self.builder(**kwargs)

    def _checked_num_classes(self, value: object) -> int:
        check("num_classes", value)
        if not _takes(self.builder, "num_classes"):
            raise InvalidArgument(f"{self.name} does not take num_classes (its factory has no such argument); "
                                  "build the model yourself and pass it as a module")
        return value

    def build_cheapest(self, num_classes: int | None = None) -> nn.Module:
        """On the meta device when its constructor allows it (no memory for weights), else on CPU."""
        try:
            return self.build("meta", num_classes)
        except RffError:  # a bad argument, file or factory: building on CPU would fail the same way
            raise
        except Exception:  # e.g. ``.tolist()`` on a meta tensor; a failing user factory fails again on CPU
            return self.build("cpu", num_classes)


# in-place ops that weight initialisers apply to parameters (timm's trunc_normal_: uniform_, erfinv_,
# mul_, add_, clamp_); none changes a tensor's shape, dtype or device
_INIT_OPS = frozenset(getattr(torch.Tensor, name) for name in (
    "uniform_", "normal_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "mul_", "add_", "sub_", "div_",
    "fill_", "zero_", "copy_", "exponential_", "bernoulli_", "random_", "log_normal_", "abs_", "sqrt_", "exp_",
    "neg_", "sign_", "fmod_", "remainder_", "masked_fill_", "index_fill_"))


class _NoInitOnMeta(torch.overrides.TorchFunctionMode):
    """Skip weight initialisation on meta tensors, which hold no values to initialise.

    Models are built on the meta device for their shapes only; their initialisers still
    run each op through torch's Python meta kernels, which made construction a third of
    the zoo sweep's time.
    """

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _INIT_OPS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _registered_on_meta() -> Iterator[None]:
    """Parameters and buffers go to the meta device as modules register them (their values are never read)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if type(param) is nn.Parameter and not param.is_meta:
            param = nn.Parameter(param.to("meta"), param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer  # type: ignore[method-assign]


def _takes(factory: Callable, name: str) -> bool:
    """Whether ``factory`` accepts keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def _builtin(name: str) -> ModelSpec | None:
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

    Anything else (fractions, zero or negative sizes, sizes too large to describe a
    tensor, a missing spatial axis) is an :class:`InvalidArgument`, never truncated.
    """
    if value is None:
        return tuple(default)
    return _checked_size(_parse_size(value, default), value)


def _parse_size(value: Any, default: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, str):
        text = value.strip().replace("×", "x").replace("X", "x")
        if "," in text:
            return tuple(_number(p, value) for p in text.split(",") if p.strip())
        if "x" in text:
            sides = [_number(p, value) for p in text.split("x")]
            if len(sides) == len(default):
                return tuple(sides)
            if len(sides) > len(default) - 1:
                raise InvalidArgument(f"input size {value!r} has more axes than the model's {len(default) - 1}; "
                                      "give channels first with commas, e.g. 3,16,112,112")
            return (*default[: len(default) - len(sides)], *sides)
        value = _number(text, value)
    if _integer(value):
        spatial = default[1:]
        sides = len(spatial) if len(spatial) < 3 else 2  # a video keeps its frame count
        return (*default[: len(default) - sides], *(int(value),) * sides)
    if not isinstance(value, Sequence) or not all(_integer(v) for v in value):
        raise InvalidArgument(f"input size must be an int or a sequence of integers (channels, *spatial) "
                              f"such as (3, 224, 224), got {value!r}")
    return tuple(int(v) for v in value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(text: str, whole: Any) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidArgument(f"input size must be integers like 224, 224x192, 1,16000 or 3,224,224 "
                              f"(got {whole!r})") from None


def _checked_size(size: tuple[int, ...], given: Any) -> tuple[int, ...]:
    if len(size) < 2:
        raise InvalidArgument(f"input size needs channels and at least one spatial size, e.g. 3,224,224 or 1,16000 "
                              f"(got {given!r}); receptive fields are measured along spatial axes")
    if any(v < 1 for v in size):
        raise InvalidArgument(f"input size must be positive in every dimension, got {given!r} "
                              f"(e.g. 224, 224x192 or 3,224,224)")
    if math.prod(size) > MAX_INPUT_ELEMENTS:
        raise InvalidArgument(f"input size {given!r} has {math.prod(size):.3g} elements, more than any tensor "
                              f"can hold here (limit {MAX_INPUT_ELEMENTS:.3g}); give a smaller size")
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


def _check_no_arguments(name: str, factory: Callable) -> None:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: calling them tells
        return
    needed = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                             p.KEYWORD_ONLY)]
    if needed:
        raise ModelNotFound(f"model factory '{name}' needs argument(s) {', '.join(needed)}; name a function that "
                            "takes none (e.g. a wrapper that fixes them)")


def import_object(spec: str) -> object:
    """``package.module:Name`` or ``path/to/file.py:Name`` → the object (a factory, a class)."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ModelNotFound(f"expected 'package.module:name' or 'file.py:name', got '{spec}'")
    with user_code(f"your module '{where}' (imported for '{spec}')", "fix it so that it imports"):
        if where.endswith(".py"):
            module = _load_file(Path(where))
        else:
            module = _import(where, spec)
    found = getattr(module, attr, None)
    if not callable(found):
        raise ModelNotFound(f"'{where}' has no callable '{attr}'")
    return found


def _import(where: str, spec: str) -> Any:
    """``importlib.import_module(where)``; a module that does not exist is a wrong name, not failing user code."""
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise ModelNotFound(f"cannot import '{where}' for '{spec}': there is no module '{exc.name}'; check the "
                                "name, the current folder and that its package is installed") from None
        raise


def import_module_class(spec: str) -> type[nn.Module]:
    """``package.module:Class`` or ``file.py:Class`` naming an ``nn.Module`` subclass (``--leaf``)."""
    found = import_object(spec)
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        kind = "class" if isinstance(found, type) else type(found).__name__
        raise ModelNotFound(f"'{spec}' is a {kind}, not an nn.Module class; --leaf takes a module class "
                            "such as torch.nn:LSTM")
    return found


def source_files(spec: str) -> list[Path]:
    """The files a user model name reads (its module's source, an ONNX file and its data), so outputs never replace them."""
    if is_onnx_file(spec):
        return [Path(spec), *data_files(spec)]
    where, sep, _ = spec.rpartition(":")
    if not sep or where in _SOURCES:
        return []
    if where.endswith(".py"):
        return [Path(where)]
    try:
        found = importlib.util.find_spec(where)  # where the module is, without running it
    except (ImportError, ValueError):
        return []
    return [Path(found.origin)] if found is not None and found.has_location and found.origin else []


def _user(spec: str) -> ModelSpec:
    factory = import_object(spec)
    declared = getattr(factory, "default_input_size", DEFAULT_INPUT)
    try:
        size = parse_size(declared)
    except InvalidArgument as exc:
        raise UserCodeError(f"your model factory '{spec}' declares default_input_size = {brief(declared)}: {exc}")
    return ModelSpec(spec, "user", factory, size)


_SOURCES = {"rffsurgery": _builtin, "torchvision": _torchvision, "timm": _timm}


def resolve(spec: str) -> ModelSpec:
    """Turn a model name into a :class:`ModelSpec` (see the module docstring for the forms)."""
    if is_onnx_file(spec):
        return ModelSpec(spec, "onnx", functools.partial(load_onnx, spec), onnx_input(spec).size)
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


def build(spec: str, device: str = "cpu", num_classes: int | None = None) -> nn.Module:
    """Resolve and construct a model (random weights; nothing is downloaded), optionally with ``num_classes``."""
    return resolve(spec).build(device, num_classes)
