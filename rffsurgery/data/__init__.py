"""Datasets: one reader per module, one registry (:data:`DATASETS`) that every command reads its choices from.

``train --data`` and ``erf --data`` offer exactly the names below; the options a
dataset takes (``--data-root``, ``--download``, ``--image-size``, ``--per-class``,
``--cue``) come from its entry, so an option given to a dataset that has no use for it
is refused in one line instead of being ignored.

Adding a dataset = one module here whose ``open`` function returns a
:class:`~.base.Source` (``protocol_data(split, seed)`` for the trainer, ``sample(count,
seed)`` for the ERF), plus one :class:`Dataset` entry in :data:`DATASETS`.

* :mod:`.base` — the containers (:class:`~.base.ImageTensors`, :class:`~.base.ImageFiles`), the
  80/20 hold-out, the protocol's four sets, class checks;
* :mod:`.splits` — class splits (the RFF paper's CIFAR-100 table, random and custom splits);
* :mod:`.images` — image files as a model sees them, and model-input normalisation;
* readers: :mod:`.generated`, :mod:`.cifar` (CIFAR-100), :mod:`.cifar10`, :mod:`.folder`,
  :mod:`.mnist` (+ :mod:`.idx`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import InvalidArgument
from ..limits import LIMITS, check
from .base import DatasetNotFound, ImageFiles, ImageTensors, LabelledSource, ProtocolData, Source, UnknownClassError
from .cifar import cifar100
from .cifar10 import cifar10
from .folder import image_folder
from .generated import GeneratedSource, generated
from .images import fit, normalise, read_image
from .mnist import fashion_mnist, mnist
from .splits import Split

__all__ = ["DATASETS", "OPTIONS", "Dataset", "DatasetNotFound", "GeneratedSource", "ImageFiles", "ImageTensors",
           "LabelledSource", "ProtocolData", "Source", "Split", "UnknownClassError", "open_dataset", "option_users",
           "sample_inputs"]

OPTIONS = ("download", "image_size", "per_class", "cue")
"""Dataset options besides the root, by their keyword (CLI: ``--image-size`` …)."""


@dataclass(frozen=True)
class Dataset:
    """One registry entry: how to open the dataset, and which options it takes."""

    open: Callable[..., Source]
    help: str
    root: bool = True  # read from --data-root (False: made in memory)
    options: tuple[str, ...] = ()  # of OPTIONS
    streams: bool = False  # image files decoded by DataLoader workers while training (--workers applies)


DATASETS: dict[str, Dataset] = {
    "generated": Dataset(generated, "the built-in generated shapes (offline, with an optional class cue)",
                         root=False, options=("per_class", "cue")),
    "cifar100": Dataset(cifar100, "CIFAR-100 in torchvision's layout (cifar-100-python/)", options=("download",)),
    "cifar10": Dataset(cifar10, "CIFAR-10 in torchvision's layout (cifar-10-batches-py/)", options=("download",)),
    "folder": Dataset(image_folder, "an ImageFolder tree ROOT/<class>/<image>", options=("image_size",),
                      streams=True),
    "fashion-mnist": Dataset(fashion_mnist, "Fashion-MNIST's four IDX files (Debian: dataset-fashion-mnist)",
                             options=("image_size", "per_class")),
    "mnist": Dataset(mnist, "MNIST's four IDX files", options=("image_size", "per_class")),
}


def option_users(option: str) -> tuple[str, ...]:
    """The datasets that take ``option`` (``"data_root"`` for the root, ``"workers"`` for loader workers),
    for "only applies with" messages."""
    if option == "data_root":
        return tuple(name for name, d in DATASETS.items() if d.root)
    if option == "workers":
        return tuple(name for name, d in DATASETS.items() if d.streams)
    return tuple(name for name, d in DATASETS.items() if option in d.options)


def open_dataset(name: str, root: str | Path | None = None, **options: Any) -> Source:
    """The dataset ``name`` of :data:`DATASETS`; options left at ``None`` take the reader's defaults.

    An option the dataset does not take, or a root for a dataset made in memory, is an
    :class:`~rffsurgery.errors.InvalidArgument` (nothing is silently ignored).
    """
    entry = DATASETS.get(name)
    if entry is None:
        raise InvalidArgument(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    unknown = [k for k in given if k not in OPTIONS]
    if unknown:
        raise InvalidArgument(f"unknown dataset option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    for key, value in given.items():
        if key not in entry.options:
            users = option_users(key)
            raise InvalidArgument(f"--{key.replace('_', '-')} only applies with --data {' or '.join(users)}")
        if key in LIMITS:
            check(key, value)
    if not entry.root:
        if root is not None:
            raise InvalidArgument(f"--data-root only applies with --data {' or '.join(option_users('data_root'))}")
        return entry.open(**given)
    if root is None:
        raise InvalidArgument(f"--data {name} needs --data-root")
    return entry.open(root, **given)


def sample_inputs(data: str, count: int, input_size: Sequence[int], root: str | Path | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, str]:
    """``count`` model inputs ``(count, *input_size)`` and a description: ``"noise"`` or any dataset's images.

    Noise is standard normal; images (any class, picked with ``seed``) are resized to
    cover the input and centre-cropped, then normalised like the zoo's models expect.
    """
    check("images", count)
    check("seed", seed)
    channels, *spatial = input_size
    g = torch.Generator().manual_seed(seed)
    if data == "noise":
        return torch.randn((count, *input_size), generator=g), f"{count} standard-normal noise input(s)"
    if len(spatial) != 2:
        raise InvalidArgument(f"image data needs a 2-D input, the model reads {tuple(input_size)}; use noise")
    entry = DATASETS.get(data)
    if entry is None:
        raise InvalidArgument(f"unknown data source {data!r}; choose noise or one of {', '.join(DATASETS)}")
    side = {"image_size": max(spatial)} if "image_size" in entry.options else {}
    source = open_dataset(data, root, **side)
    images = source.sample(count, seed)
    if isinstance(images, ImageFiles):
        pixels = torch.stack([read_image(p, spatial) for p in images.paths])
    else:
        pixels = fit(images.images, spatial)
    return normalise(pixels, channels), f"{len(pixels)} image(s) of {source.name}"
