"""Conv2d → channel-sliding Conv3d (docs/rewrites.md; the layer is :class:`ChannelConv3d`).

A Conv2d(C → D) is eligible for ``s`` filters when it is a plain ``nn.Conv2d``
(a subclass with its own forward — timm's ``Conv2dSame``, ``StdConv2d`` — computes
something else), ``groups == 1``, ``s`` divides D and ``u = C − D/s + 1 ≥ 1``, and
a string padding resolves to integers.  By default every eligible conv except the
stem (the first conv the forward calls: it reads the image, C = 3, and gains
nothing) is replaced; globs on module paths choose others, the stem included.
Selected convs that are not eligible are reported with the reason.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from torch import nn

from ..trace.tracer import Traced, trace
from .layers import ChannelConv3d
from .select import Change, Rewrite, RewriteError, Skip, called_modules, globs, select

__all__ = ["apply_step", "rewrite_conv3d"]

STEP = "conv3d"


def _replacement(conv: nn.Conv2d, filters: int) -> ChannelConv3d:
    """The ChannelConv3d for ``conv``, or ValueError saying why there is none."""
    cls = type(conv)
    if cls.forward is not nn.Conv2d.forward or cls._conv_forward is not nn.Conv2d._conv_forward:
        raise ValueError(f"{cls.__name__} overrides Conv2d's forward")
    return ChannelConv3d.from_conv2d(conv, filters)


def _describe(conv: nn.Conv2d, new: ChannelConv3d) -> tuple[str, str]:
    k = "×".join(map(str, conv.kernel_size))
    return (f"Conv2d({conv.in_channels} → {conv.out_channels}, {k})",
            f"Conv3d({new.filters} filters, {new.depth}×{k}) → {new.out_channels}")


def candidates(traced: Traced, layers: Iterable[str] | None) -> tuple[list[str], list[Skip]]:
    """Selected Conv2d paths, and the stem when it is left out by default."""
    convs = called_modules(traced, nn.Conv2d)
    layers = globs(layers)
    if layers:
        return select(convs, layers, "Conv2d"), []
    if not convs:
        raise RewriteError("the model calls no nn.Conv2d")
    return convs[1:], [Skip(convs[0], "stem (the first conv; choose it by name to replace it)")]


def apply_step(model: nn.Module, step: dict[str, Any]) -> list[Change]:
    """Replace the convs a recipe step names, in place (all are validated before any is replaced)."""
    built = []
    for path in step["layers"]:
        conv = model.get_submodule(path)
        if not isinstance(conv, nn.Conv2d):
            raise RewriteError(f"'{path}' is a {type(conv).__name__}, not an nn.Conv2d")
        try:
            built.append((path, conv, _replacement(conv, step["filters"])))
        except ValueError as exc:
            raise RewriteError(f"'{path}': {exc}") from exc
    for path, conv, new in built:
        model.set_submodule(path, new)
    return [Change(path, *_describe(conv, new)) for path, conv, new in built]


def rewrite_conv3d(model: nn.Module, filters: int, *, layers: Iterable[str] | None = None,
                   inplace: bool = False, input_size: tuple[int, ...] | None = None) -> Rewrite:
    """Replace eligible Conv2d layers with :class:`ChannelConv3d` of ``filters`` filters.

    ``layers``: globs on module paths (default: every conv but the stem).  Raises
    :class:`RewriteError` when no selected conv is eligible (listing why).  Returns
    a :class:`Rewrite` whose ``model`` is a copy unless ``inplace``; with
    ``filters == D`` (u = C) a layer is an exact copy of its Conv2d.  ``input_size``
    (no batch) lets a model whose code branches on shapes be traced.
    """
    traced = trace(model, input_shape=None if input_size is None else (1, *input_size))
    chosen, skipped = candidates(traced, layers)
    eligible = []
    for path in chosen:
        try:
            _replacement(model.get_submodule(path), filters)
            eligible.append(path)
        except ValueError as exc:
            skipped.append(Skip(path, str(exc)))
    if not eligible:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped)
        raise RewriteError(f"no eligible Conv2d for {filters} filters: {reasons}")
    if not inplace:
        model = copy.deepcopy(model)
    step = {"rewrite": STEP, "filters": filters, "layers": eligible}
    return Rewrite(model, step, apply_step(model, step), skipped)
