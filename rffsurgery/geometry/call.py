"""What a geometry rule sees of one graph node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from .tensor import Geo, TensorGeom

__all__ = ["Call", "RuleError"]

_MISSING = object()


class RuleError(ValueError):
    """A rule met arguments it cannot describe exactly; the node becomes unknown with this reason."""


@dataclass
class Call:
    """One node's op, its concrete (meta) argument values and their geometries.

    ``args``/``kwargs`` hold concrete values (meta tensors, ints, tuples) with the
    same structure as the node's arguments; ``geo_args``/``geo_kwargs`` hold the
    geometry of every argument that came from another node (``None`` for literals).
    """

    node: fx.Node
    module: nn.Module | None
    args: tuple
    kwargs: dict
    geo_args: tuple
    geo_kwargs: dict
    out: Any
    notes: list[str] = field(default_factory=list)

    def arg(self, index: int, name: str, default: Any = _MISSING) -> Any:
        """Argument by position or keyword, whichever the call used."""
        if index < len(self.args):
            return self.args[index]
        if name in self.kwargs:
            return self.kwargs[name]
        if default is _MISSING:
            raise RuleError(f"missing argument {name!r}")
        return default

    def geo(self, index: int = 0, name: str = "input") -> Geo:
        if index < len(self.geo_args):
            return self.geo_args[index]
        return self.geo_kwargs.get(name)

    @property
    def input(self) -> torch.Tensor:
        return self.arg(0, "input")

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.out.shape)

    def tensor_inputs(self) -> list[tuple[TensorGeom, tuple[int, ...]]]:
        """Every tensor argument that came from a node, with its shape, in argument order."""
        found: list[tuple[TensorGeom, tuple[int, ...]]] = []

        def walk(geo: Any, val: Any) -> None:
            if isinstance(geo, TensorGeom) and isinstance(val, torch.Tensor):
                found.append((geo, tuple(val.shape)))
            elif isinstance(geo, (tuple, list)) and isinstance(val, (tuple, list)):
                for g, v in zip(geo, val):
                    walk(g, v)
            elif isinstance(geo, dict) and isinstance(val, dict):
                for k in geo:
                    walk(geo[k], val.get(k))

        walk(self.geo_args, self.args)
        walk(self.geo_kwargs, self.kwargs)
        return found
