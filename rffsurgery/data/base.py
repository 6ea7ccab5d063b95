"""Labelled image sets, class selection by name, the 80/20 hold-out, and the protocol's four sets.

Two containers: :class:`ImageTensors` (a whole small dataset as one uint8 tensor,
later moved to the training device once) and :class:`ImageFiles` (paths of a folder
tree, decoded by DataLoader workers).  A *source* (CIFAR-100, an ImageFolder tree,
the generated dataset) turns a :class:`~rffsurgery.train.splits.Split` into
:class:`ProtocolData`: base train/val and transfer train/val.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, Union

import torch

from ..errors import InvalidArgument, RffError
from ..seeding import generator
from .splits import Split

__all__ = ["DatasetNotFound", "data_settings", "ImageFiles", "ImageTensors", "LabelledSource", "ProtocolData", "Source",
           "UnknownClassError", "holdout", "input_size_of", "pick", "root_setting"]


class DatasetNotFound(RffError, FileNotFoundError):
    """The dataset folder or one of its files is missing; the message says what was expected."""


class UnknownClassError(RffError, ValueError):
    """A class name that the dataset does not have; the message lists close matches."""


@dataclass(frozen=True)
class ImageTensors:
    """Images as one uint8 tensor ``(N, C, H, W)`` with int64 labels indexing ``classes``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor) -> "ImageTensors":
        return ImageTensors(self.images[index], self.labels[index], self.classes)


@dataclass(frozen=True)
class ImageFiles:
    """Image files (decoded on the fly, resized and centre-cropped to ``image_size``) with labels."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    classes: tuple[str, ...]
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor) -> "ImageFiles":
        return ImageFiles(tuple(self.paths[i] for i in index.tolist()), self.labels[index], self.classes,
                          self.image_size)


Images = Union[ImageTensors, ImageFiles]


def input_size_of(data: Images) -> tuple[int, ...]:
    """``(C, H, W)`` of the images as the model will read them."""
    if isinstance(data, ImageFiles):
        return (3, data.image_size, data.image_size)
    return tuple(data.images.shape[1:])


def holdout(data: Images, fraction: float, seed: int, part: str = "") -> tuple[Images, Images]:
    """Split every class at random into ``1 - fraction`` for training and ``fraction`` for validation."""
    if not 0 < fraction < 1:
        raise InvalidArgument(f"the hold-out fraction must be between 0 and 1, got {fraction}")
    g = generator(seed, "holdout", part)
    train, val = [], []
    for label in range(len(data.classes)):
        members = torch.nonzero(data.labels == label).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        cut = round(fraction * len(members))
        if cut == 0 or cut == len(members):
            raise InvalidArgument(f"class {data.classes[label]!r} has {len(members)} image(s): too few to hold out "
                             f"{fraction:.0%} for validation")
        val.append(members[:cut])
        train.append(members[cut:])
    return data.take(torch.cat(train).sort().values), data.take(torch.cat(val).sort().values)


@dataclass(frozen=True)
class ProtocolData:
    """The four image sets of one protocol run."""

    base_train: Images
    base_val: Images
    transfer_train: Images
    transfer_val: Images

    def describe(self) -> str:
        return (f"base {len(self.base_train.classes)} classes ({len(self.base_train)} train / "
                f"{len(self.base_val)} val), transfer {len(self.transfer_train.classes)} classes "
                f"({len(self.transfer_train)} train / {len(self.transfer_val)} val)")


def data_settings(source: "Source", split: Split | None = None) -> dict[str, Any]:
    """What the images depend on besides the seed: recorded in every checkpoint and report, and compared
    on ``--resume``, so that a continued run never mixes data made with other settings.

    The source's name, its generator options (``per_class``, ``cue``, ``image_size``), its own
    ``settings`` (a reader's data root, resolved, and image size), and with ``split`` the
    classes of each half (a custom split keeps its name while its classes change).
    """
    found: dict[str, Any] = {"source": source.name}
    for key in ("per_class", "cue", "image_size"):
        if hasattr(source, key):
            found[key] = getattr(source, key)
    found.update(getattr(source, "settings", {}))
    if split is not None:
        found.update(base=list(split.base), transfer=list(split.transfer))
    return found


def root_setting(root: Path) -> dict[str, str]:
    """``{"root": the absolute path}``: the data root a source records in its ``settings``."""
    return {"root": str(root.resolve())}


class Source(Protocol):
    """Anything that can produce the protocol's data for a split."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]

    def protocol_data(self, split: Split, seed: int, fraction: float = 0.2) -> ProtocolData: ...

    def sample(self, count: int, seed: int) -> Images: ...


def pick(data: Images, count: int, seed: int) -> Images:
    """``count`` items of ``data`` (all if fewer) in an order drawn with ``seed``: inputs for the ERF."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.take(order[:count])


def check_classes(source_name: str, known: Sequence[str], wanted: Sequence[str]) -> None:
    """Raise :class:`UnknownClassError` naming every unknown class with its closest known names."""
    unknown = [w for w in wanted if w not in set(known)]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    raise UnknownClassError(f"{source_name} has no class {', '.join(hints)}; it has {len(known)} classes, "
                            f"e.g. {', '.join(list(known)[:8])}")


@dataclass(frozen=True)
class LabelledSource:
    """A real dataset: every requested class is loaded and ``fraction`` of it held out for validation.

    ``load(names)`` returns the images of those classes, labelled by their position in ``names``.
    """

    name: str
    classes: tuple[str, ...]
    load: Callable[[Sequence[str]], Images]
    splits: dict[str, Split]
    settings: dict[str, Any] = field(default_factory=dict)  # what else the images depend on (image size …)

    def protocol_data(self, split: Split, seed: int, fraction: float = 0.2) -> ProtocolData:
        check_classes(self.name, self.classes, split.base + split.transfer)
        base_train, base_val = holdout(self.load(split.base), fraction, seed, "base")
        transfer_train, transfer_val = holdout(self.load(split.transfer), fraction, seed, "transfer")
        return ProtocolData(base_train, base_val, transfer_train, transfer_val)

    def sample(self, count: int, seed: int) -> Images:
        """``count`` training images of any class, picked with ``seed``."""
        return pick(self.load(self.classes), count, seed)
