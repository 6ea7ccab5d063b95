"""Running one fx operation on the meta device: shapes without memory or compute.

Both the shape pass (:mod:`rffsurgery.geometry.propagate`) and the size-aware
tracer (:mod:`rffsurgery.trace`) evaluate graph nodes this way, so it lives below
both.  Parameters of a real model are handed to a meta run as meta views,
swapped in for the duration of one call; the model's tensors are never modified.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

__all__ = ["on_meta", "read_attr", "run_op", "thawed", "to_meta"]


def to_meta(value: Any) -> Any:
    """``value`` with every tensor in it moved to the meta device."""
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        return value.to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


def thawed(value: Any) -> Any:
    """fx's immutable lists and dicts as plain ones, recursively."""
    if isinstance(value, list):
        return [thawed(v) for v in value]
    if isinstance(value, tuple):
        return type(value)(thawed(v) for v in value) if type(value) is tuple else value
    if isinstance(value, dict):
        return {k: thawed(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def on_meta(module: nn.Module) -> Iterator[None]:
    """Run a module of a real model with meta views of its parameters and buffers, then put them back.

    Leaf modules usually own their tensors directly: swapping the two dicts is far
    cheaper than ``torch.func.functional_call``, which is kept for nested leaves.
    """
    params, buffers = module._parameters, module._buffers
    if all(t is None or t.device.type == "meta" for t in (*params.values(), *buffers.values())) and not any(
            True for _ in module.children()):
        yield
        return
    if any(True for _ in module.children()):
        state = {k: v.to("meta") for k, v in module.state_dict(keep_vars=True).items()}
        with torch.nn.utils.stateless._reparametrize_module(module, state):
            yield
        return
    # straight into __dict__: nn.Module.__setattr__'s type checks cost more than the swap itself
    module.__dict__["_parameters"] = {k: None if v is None else nn.Parameter(v.to("meta"), v.requires_grad)
                                      for k, v in params.items()}
    module.__dict__["_buffers"] = {k: None if v is None else v.to("meta") for k, v in buffers.items()}
    try:
        yield
    finally:
        module.__dict__["_parameters"], module.__dict__["_buffers"] = params, buffers


def read_attr(root: nn.Module, target: str) -> Any:
    """The value behind a ``get_attr`` target (``"layer1.0.conv1.weight"``).

    Read from the modules' own dicts, so that it also works while torch.fx traces
    (when ``nn.Module.__getattr__`` records nodes instead of answering).
    """
    obj: Any = root
    for part in target.split("."):
        if isinstance(obj, nn.Module):
            found = [d[part] for d in (obj._parameters, obj._buffers, obj._modules, obj.__dict__) if part in d]
            if not found:
                raise AttributeError(f"{type(obj).__name__} has no attribute {part!r} (reading {target!r})")
            obj = found[0]
        else:
            obj = getattr(obj, part)
    return obj


def run_op(op: str, target: Any, module: nn.Module | None, args: tuple, kwargs: dict, real: bool = False) -> Any:
    """The output of one fx node (``call_module`` / ``call_function`` / ``call_method``) for these inputs.

    On the meta device unless ``real``; ``module`` is the called module for ``call_module``.
    """
    if not real:
        args, kwargs = to_meta(args), to_meta(kwargs)
    if op == "call_module":
        assert module is not None
        if real:
            return module(*args, **kwargs)
        with on_meta(module):
            return module(*args, **kwargs)
    if op == "call_function":
        # fx freezes list arguments; a wrapped function may edit its own (torchvision's swin3d does)
        function: Callable = target
        return function(*thawed(args), **thawed(kwargs))
    self_obj, *rest = args
    return getattr(self_obj, target)(*rest, **kwargs)
