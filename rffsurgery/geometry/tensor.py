"""Geometry of a whole tensor: which of its dims carry which spatial axis of the input.

A rule never has to guess layouts: an NCHW tensor straight from the image has
``dims = (None, None, Track(0, id), Track(1, id))``; after ``permute(0, 2, 3, 1)``
the tracks move with their dims, so a LayerNorm over the last dim of an NHWC
tensor is known to normalise channels, not space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Union

from .algebra import AxisMap

__all__ = ["Track", "TensorGeom", "Unknown", "Misaligned", "Geo", "unite"]


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
class TensorGeom:
    """Per-dim tracks of a tensor that depends on the input.

    ``global_ctx`` records that some path into the tensor went through a global
    operation (squeeze-excitation gate, spatial normalisation, attention) even
    though a local receptive field still exists along the tracked dims.
    ``const`` marks tensors that do not depend on the input at all (parameters,
    buffers, ``torch.arange``): they never widen a receptive field.
    """

    dims: tuple[Track | None, ...]
    global_ctx: bool = False
    const: bool = False

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

    def track_of(self, axis: int) -> Track | None:
        for t in self.dims:
            if t is not None and t.axis == axis:
                return t
        return None

    @property
    def is_global(self) -> bool:
        """Depends on the input but no dim keeps a local map."""
        return not self.const and all(t is None or t.map is None for t in self.dims)

    def with_dims(self, dims: Iterable[Track | None], global_ctx: bool = False) -> "TensorGeom":
        return replace(self, dims=tuple(dims), global_ctx=self.global_ctx or global_ctx)

    def globalised(self, rank: int) -> "TensorGeom":
        """Every spatial axis reduced away: the output depends on the whole input."""
        if self.const:
            return TensorGeom.constant(rank)
        return TensorGeom((None,) * rank, global_ctx=True)


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


@dataclass
class UnionResult:
    geom: TensorGeom | Unknown | Misaligned
    notes: list[str] = field(default_factory=list)


def unite(inputs: list[tuple[TensorGeom, tuple[int, ...]]], out_shape: tuple[int, ...]) -> UnionResult:
    """Union of several tensors combined pointwise with broadcasting (add, mul, cat, where…).

    Dims are aligned from the right, as broadcasting does.  An input that does not
    keep an axis local — collapsed to size 1 and broadcast (a squeeze-excitation
    gate), or reduced away — depends on the whole axis: the result keeps the local
    maps of the other inputs and is marked ``global_ctx``.  An input whose dim is
    ``whole`` (every unit reads the whole axis itself, after a recurrence) makes
    that dim global in the result.  Branches that carry the same axis in different
    dims, or at different strides, are reported, never guessed.
    """
    rank = len(out_shape)
    live = [(g, s) for g, s in inputs if not g.const]
    if not live:
        return UnionResult(TensorGeom.constant(rank))
    notes: list[str] = []
    maps: list[list[AxisMap]] = [[] for _ in range(rank)]
    axis_at: list[int | None] = [None] * rank
    whole = [False] * rank
    global_ctx = False
    local_axes: list[set[int]] = []
    for g, shape in live:
        global_ctx |= g.global_ctx
        offset = rank - len(shape)
        mine: set[int] = set()
        for d, (t, n) in enumerate(zip(g.dims, shape)):
            if t is None:
                continue
            od = d + offset
            if axis_at[od] not in (None, t.axis):
                return UnionResult(Unknown(f"branches carry spatial axes {axis_at[od]} and {t.axis} in one dim"))
            axis_at[od] = t.axis
            whole[od] |= t.whole
            if t.map is not None and not (n == 1 and out_shape[od] != 1):
                maps[od].append(t.map)
                mine.add(t.axis)
        local_axes.append(mine)
    every = set().union(*local_axes)
    global_ctx |= any(mine != every for mine in local_axes)
    dims: list[Track | None] = []
    for od in range(rank):
        if axis_at[od] is None:
            dims.append(None)
            continue
        if not maps[od] or whole[od]:
            dims.append(Track(axis_at[od], None, whole[od]))
            continue
        merged = maps[od][0]
        for m in maps[od][1:]:
            if not merged.aligned_with(m):
                return UnionResult(Misaligned(
                    f"branches meet at different strides {merged.stride} and {m.stride}: their units do not line "
                    "up (one branch was resized by a non-integer ratio, e.g. a gate pooled and interpolated back "
                    "to an odd size), so no receptive field describes this node exactly"))
            if not merged.same_centres(m):
                notes.append(f"axis {axis_at[od]}: branch centres differ")
            merged = merged.union(m)
        dims.append(Track(axis_at[od], merged))
    return UnionResult(TensorGeom(tuple(dims), global_ctx=global_ctx), notes)
