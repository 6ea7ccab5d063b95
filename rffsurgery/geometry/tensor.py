"""Geometry of a whole tensor: which of its dims carry which spatial axis of the input.

A rule never has to guess layouts: an NCHW tensor straight from the image has
``dims = (None, None, Track(0, id), Track(1, id))``; after ``permute(0, 2, 3, 1)``
the tracks move with their dims, so a LayerNorm over the last dim of an NHWC
tensor is known to normalise channels, not space.

A reshape can split an axis into factors or merge it with others (window
partitions, patches, tokens, space-to-depth).  Such a dim is :class:`Packed`: its
index is the row-major combination of :class:`Digit` s, and the unit index of an
axis is the mixed-radix number its digits spell (``H → (H/w, w)``: unit
``u = q·w + r``).  The axis keeps one map, in :attr:`TensorGeom.packed`; the
operations on factors live in :mod:`.factors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Union

from .algebra import AxisMap

__all__ = ["Digit", "Geo", "Misaligned", "Packed", "TensorGeom", "Track", "Unknown"]


@dataclass(frozen=True)
class Track:
    """One input spatial axis carried by one tensor dim.

    ``map is None`` means the dim has been collapsed by a global reduction kept as a
    size-1 dim (``adaptive_avg_pool2d(x, 1)``, ``mean(keepdim=True)``): each of its
    units depends on the whole extent of the axis.  Broadcast back up (a
    squeeze-excitation gate) it is a summary that gives global context.  ``whole``
    marks the other kind: a full-size dim each of whose units reads the whole axis
    itself (the output of a recurrence scanning it); it makes any union global.
    """

    axis: int
    map: AxisMap | None
    whole: bool = False


@dataclass(frozen=True)
class Digit:
    """One factor of a dim: ``size`` values; a spatial one adds ``value·place`` to its axis's unit index.

    ``axis is None``: a factor that is not spatial (batch, channels, heads, a
    window's offsets once they are mixed); like channels, its values are summed
    when a unit's receptive field is read.
    """

    axis: int | None
    place: int
    size: int


@dataclass(frozen=True)
class Packed:
    """A dim whose index is ``lead`` + the row-major combination of its digits (most significant first).

    ``lead`` / ``trail`` extra elements (a class token concatenated in front) hold no
    unit of any axis: they are constant or already global.
    """

    digits: tuple[Digit, ...]
    lead: int = 0
    trail: int = 0

    @property
    def axes(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(d.axis for d in self.digits if d.axis is not None))

    @property
    def size(self) -> int:
        return self.lead + math.prod(d.size for d in self.digits) + self.trail


Dim = Union[Track, Packed, None]


@dataclass(frozen=True)
class TensorGeom:
    """Per-dim tracks of a tensor that depends on the input.

    ``global_ctx`` records that some path into the tensor went through a global
    operation (squeeze-excitation gate, spatial normalisation, attention) even
    though a local receptive field still exists along the tracked dims.
    ``const`` marks tensors that do not depend on the input at all (parameters,
    buffers, ``torch.arange``): they never widen a receptive field.
    ``packed`` holds the map of every axis carried by :class:`Packed` dims
    (``None``: each unit reads the whole axis, like a ``whole`` track).
    ``whole`` marks a tensor each of whose units reads the whole input itself
    (after attention over all tokens), not a pooled summary: like a ``whole``
    track, it makes any union global.
    """

    dims: tuple[Dim, ...]
    global_ctx: bool = False
    const: bool = False
    packed: tuple[tuple[int, AxisMap | None], ...] = ()
    whole: bool = False

    @classmethod
    def image(cls, rank: int, spatial: int) -> "TensorGeom":
        """The model input: batch, channels, then ``spatial`` tracked axes."""
        lead = (None,) * (rank - spatial)
        return cls(lead + tuple(Track(a, AxisMap.identity()) for a in range(spatial)))

    @classmethod
    def constant(cls, rank: int) -> "TensorGeom":
        return cls((None,) * rank, const=True)

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def is_global(self) -> bool:
        """Depends on the input but no dim keeps a local map."""
        return (not self.const and all(t is None or t.map is None for t in self.dims if not isinstance(t, Packed))
                and (not self.packed or all(m is None for _, m in self.packed)))

    def with_dims(self, dims: Iterable[Dim], global_ctx: bool = False) -> "TensorGeom":
        return replace(self, dims=tuple(dims), global_ctx=self.global_ctx or global_ctx)

    def globalised(self, rank: int) -> "TensorGeom":
        """Every spatial axis reduced away: the output depends on the whole input (a summary)."""
        if self.const:
            return TensorGeom.constant(rank)
        return TensorGeom((None,) * rank, global_ctx=True)

    @classmethod
    def everywhere(cls, rank: int) -> "TensorGeom":
        """Every unit reads the whole input itself (see ``whole``)."""
        return cls((None,) * rank, global_ctx=True, whole=True)


@dataclass(frozen=True)
class Unknown:
    """No rule for an op (or the rule cannot decide); everything downstream is unknown too."""

    reason: str
    origin: str = ""


@dataclass(frozen=True)
class Misaligned:
    """Branches at different effective strides meet: the union is not periodic."""

    reason: str
    origin: str = ""


Geo = Union[TensorGeom, Unknown, Misaligned, tuple, None]
