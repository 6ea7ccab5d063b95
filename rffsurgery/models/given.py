"""What a user may pass where a model is expected: a module, or a result that holds one.

``rewrite(...)`` returns a :class:`~rffsurgery.surgery.recipe.Rewritten` (the model
before and after, the changes, the recipe); a user who hands it to ``freeze``,
``analyze``, ``erf``, ``export_onnx`` or ``load_weights`` means its rewritten model.
Rather than each function knowing every such result type (which would make the core
import the rooms above it), a result that holds a model says so with ``as_module()``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import nn

from ..errors import InvalidArgument, brief

__all__ = ["HoldsModel", "module_of", "require_module"]


@runtime_checkable
class HoldsModel(Protocol):
    """A result that stands for a model (``Rewritten``: its rewritten model)."""

    def as_module(self) -> nn.Module: ...


def module_of(value: Any) -> Any:
    """The module ``value`` stands for: itself, or what a :class:`HoldsModel` holds; anything else unchanged."""
    return value.as_module() if isinstance(value, HoldsModel) and not isinstance(value, nn.Module) else value


def require_module(value: Any, caller: str) -> nn.Module:
    """:func:`module_of` ``value`` when that is an ``nn.Module``, else a one-line :class:`InvalidArgument`."""
    value = module_of(value)
    if isinstance(value, nn.Module):
        return value
    if isinstance(value, type) and issubclass(value, nn.Module):
        raise InvalidArgument(f"{caller} got the class {value.__name__}, not a model: pass an instance, "
                              f"e.g. {value.__name__}(...)")
    raise InvalidArgument(f"{caller} takes a model (an nn.Module, or what rewrite() returns), "
                          f"got {type(value).__name__} {brief(value)}")
