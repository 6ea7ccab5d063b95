"""MNIST and Fashion-MNIST as protocol sources, from the four IDX files on disk.

Layouts found under ``--data-root``: a flat folder holding ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each
optionally ``.gz``; the Debian packages ``dataset-fashion-mnist`` install them so, in
``/usr/share/datasets/fashion-mnist``), or torchvision's ``FashionMNIST/raw/`` /
``MNIST/raw/`` below the root.

How the images meet the model (one rule for every model):

* **Channels**: the grey channel is replicated to 3 channels.  Every zoo model takes
  RGB, and for a first convolution ``w`` replicated input equals a 1-channel
  convolution with ``w.sum(1)``, so nothing is lost; only the first layer does 3× its
  (small) multiply work.
* **Size**: for a model side ``S`` with ``28 ≤ S ≤ 36`` the 28×28 image is centred on a
  zero canvas (28→32 for the base CNN: MNIST-family backgrounds are 0, so padding adds
  only more background, the LeNet-5 convention); any other ``S`` is a bilinear
  (antialiased) resize.
* **Validation**: the official test images, disjoint from training by construction
  (``ProtocolConfig.holdout`` does not apply).  Transfer classes: all of them (1,000 per
  class), enough to resolve about 1 % (binomial SE ≈ 0.007 at 90 % on 2,000 images, and
  the two models are compared on the same images).  Base classes: the first
  ``base_val_per_class`` (default 250) of each class in file order — that set only
  drives the overfitting criterion and the logs, and evaluating all 8,000 after every
  epoch would cost two thirds of a training epoch at 500 images per class.
* **Training images**: all 6,000 per class, or ``per_class`` of them drawn per class with
  a generator seeded by (run seed, class name), so a class has the same subset in every
  split of a seed, and different seeds see different subsets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidArgument
from ..seeding import generator
from .base import DatasetNotFound, ImageTensors, ProtocolData, check_classes, root_setting
from .idx import find_idx, read_pair
from .splits import Split

__all__ = ["FASHION_CLASSES", "FASHION_SPLITS", "HARD_GARMENTS", "MNIST_CLASSES", "MnistSource", "fashion_mnist", "fit_side", "mnist",
           "mnist_source"]

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot")
"""Label order of Xiao et al. 2017 (T-shirt/top, Trouser, …, Ankle boot), in shell-friendly spelling."""
MNIST_CLASSES = tuple(str(d) for d in range(10))

_PAIRS = (  # transfer pairs; the other 8 classes are the base
    "shirt-pullover",  # upper-body garments close to the base's t-shirt and coat (hard)
    "shirt-coat",  # the most confused pair of the dataset (hardest)
    "sandal-sneaker",  # footwear, with the ankle boot left in the base
    "trouser-bag",  # shapes unlike anything in the base (easy)
    "t-shirt-dress",  # short garments; the base keeps shirt and pullover
)


def _pair_split(name: str) -> Split:
    transfer = next((a, name[len(a) + 1:]) for a in FASHION_CLASSES if name.startswith(a + "-"))
    return Split(name, tuple(c for c in FASHION_CLASSES if c not in transfer), transfer)


HARD_GARMENTS = ("t-shirt", "pullover", "dress", "coat", "shirt")
"""The upper-body garments that Fashion-MNIST classifiers confuse most (Xiao et al. 2017, the confusion
matrices of its benchmark): transfer tasks among them are far from the ceiling."""


def _hard_split(transfer: tuple[str, ...]) -> Split:
    return Split("hard." + "+".join(transfer), tuple(c for c in FASHION_CLASSES if c not in transfer), transfer)


FASHION_SPLITS: dict[str, Split] = {name: _pair_split(name) for name in _PAIRS}
FASHION_SPLITS.update((s.name, s) for s in map(_hard_split, itertools.combinations(HARD_GARMENTS, 3)))
"""The five named pairs, then the ten 7/3 splits ``hard.a+b+c`` whose transfer task is three of the
:data:`HARD_GARMENTS` (``--split 'hard.*'`` selects them all)."""

_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_DATASETS = {"fashion-mnist": ("Fashion-MNIST", "FashionMNIST", FASHION_CLASSES, FASHION_SPLITS,
                               "apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist)"),
             "mnist": ("MNIST", "MNIST", MNIST_CLASSES, {}, "torchvision.datasets.MNIST(root, download=True)")}


def _pads(size: int, side: int) -> bool:
    """Whether ``size`` is brought to ``side`` by zero padding (else by resizing)."""
    return size <= side <= size + 8


def fit_side(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 ``(N, h, w)`` grey images → uint8 ``(N, 3, side, side)`` (see the module docstring for the rule)."""
    n, h, w = images.shape
    x = images.unsqueeze(1)
    if _pads(h, side) and _pads(w, side):
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top))
    else:
        x = F.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.expand(n, 3, side, side).contiguous()


@dataclass(frozen=True)
class MnistSource:
    """An MNIST-family dataset in memory (uint8), serving 8/2 splits with test-set validation."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    side: int = 32
    per_class: int | None = None
    base_val_per_class: int | None = 250
    root: Path | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """What the images depend on besides the class counts (see :func:`~.base.data_settings`)."""
        return {**(root_setting(self.root) if self.root is not None else {}), "image_size": self.side,
                "base_val_per_class": self.base_val_per_class}

    def __post_init__(self) -> None:
        if self.per_class is not None:
            fewest = int(torch.bincount(self.train[1], minlength=len(self.classes)).min())
            if not 1 <= self.per_class <= fewest:
                raise InvalidArgument(f"--per-class {self.per_class}: {self.name} has {fewest} training images "
                                      f"in its smallest class; choose 1…{fewest}")

    def _take(self, part: tuple[torch.Tensor, torch.Tensor], wanted: Sequence[str], count: int | None,
              seed: int | None = None) -> ImageTensors:
        """``count`` images of each wanted class (all if ``None``): drawn with ``seed``, else the first ones."""
        images, labels = part
        chosen = []
        for name in wanted:
            members = torch.nonzero(labels == self.classes.index(name)).flatten()
            if count is not None and seed is not None:
                order = torch.randperm(len(members), generator=generator(seed, "per-class", name))
                members = members[order[:count]].sort().values
            chosen.append(members[:count])
        index = torch.cat(chosen)
        relabel = torch.cat([torch.full((len(c),), i, dtype=torch.int64) for i, c in enumerate(chosen)])
        return ImageTensors(fit_side(images[index], self.side), relabel, tuple(wanted))

    @property
    def note(self) -> str:
        """One line for the run's banner: how the images were adapted and where validation comes from."""
        fit = "zero-padded" if _pads(28, self.side) else "resized"
        train = "all" if self.per_class is None else f"{self.per_class} (seeded)"
        return (f"{self.name}: {train} training images per class; grey replicated to 3 channels, 28×28 {fit} to "
                f"{self.side}×{self.side}; validation on the official test images")

    def protocol_data(self, split: Split, seed: int, fraction: float = 0.2) -> ProtocolData:
        """Training images (``per_class`` of each, seeded) and the official test images for validation."""
        check_classes(self.name, self.classes, split.base + split.transfer)
        return ProtocolData(self._take(self.train, split.base, self.per_class, seed),
                            self._take(self.test, split.base, self.base_val_per_class),
                            self._take(self.train, split.transfer, self.per_class, seed),
                            self._take(self.test, split.transfer, None))

    def train_test(self, seed: int) -> tuple[ImageTensors, ImageTensors]:
        """All classes: the training images (``per_class`` of each, seeded) and every official test image."""
        return self._take(self.train, self.classes, self.per_class, seed), self._take(self.test, self.classes, None)

    def sample(self, count: int, seed: int) -> ImageTensors:
        """``count`` training images of any class, picked with ``seed`` (only those are resized)."""
        images, labels = self.train
        index = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:count]
        return ImageTensors(fit_side(images[index], self.side), labels[index], self.classes)


def mnist_source(kind: str, root: str | Path, side: int = 32, per_class: int | None = None,
                 base_val_per_class: int | None = 250) -> MnistSource:
    """``kind`` is ``"fashion-mnist"`` or ``"mnist"``; reads and checks the four IDX files under ``root``."""
    if kind not in _DATASETS:
        raise InvalidArgument(f"unknown MNIST-family dataset {kind!r}; known: {', '.join(_DATASETS)}")
    title, folder, classes, splits, hint = _DATASETS[kind]
    root = Path(root).expanduser()
    parts = {}
    for part, stems in _FILES.items():
        paths = [find_idx(root, stem, (f"{folder}/raw", "raw")) for stem in stems]
        missing = [s for s, p in zip(stems, paths) if p is None]
        if missing:
            raise DatasetNotFound(f"{title} not found: no {missing[0]}[.gz] in {root} or {root / folder / 'raw'}; "
                                  f"get the files with: {hint}")
        images, labels = read_pair(paths[0], paths[1], len(classes))
        parts[part] = (torch.from_numpy(np.array(images)), torch.from_numpy(labels.astype(np.int64)))
    return MnistSource(title, classes, splits, parts["train"], parts["test"], side, per_class, base_val_per_class,
                       root)


def fashion_mnist(root: str | Path, image_size: int = 32, per_class: int | None = None) -> MnistSource:
    """The registry's entry point for Fashion-MNIST (see :func:`mnist_source`)."""
    return mnist_source("fashion-mnist", root, image_size, per_class)


def mnist(root: str | Path, image_size: int = 32, per_class: int | None = None) -> MnistSource:
    """The registry's entry point for MNIST (see :func:`mnist_source`)."""
    return mnist_source("mnist", root, image_size, per_class)
