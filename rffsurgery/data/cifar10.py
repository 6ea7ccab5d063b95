"""CIFAR-10 from a local folder in torchvision's on-disk layout, with its official test set.

Expected: ``ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (``ROOT``
may also be that folder itself), what ``torchvision.datasets.CIFAR10`` downloads and the
official tarball unpacks to.  The pickles are read with the restricted unpickler of
:mod:`rffsurgery.train.cifar` (only the numpy names a CIFAR pickle needs).  Nothing is
downloaded unless ``download=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .base import DatasetNotFound, Images, ImageTensors, LabelledSource, root_setting
from .cifar import find_folder, guarded_download, read_pickle, take_classes

__all__ = ["TrainTestSource", "cifar10"]

FOLDER = "cifar-10-batches-py"
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = "test_batch"
META = "batches.meta"


@dataclass(frozen=True)
class TrainTestSource(LabelledSource):
    """A labelled source that also has an official test set of all its classes.

    ``load`` gives training images (the RFF protocol holds 20 % of them out, as for any
    :class:`LabelledSource`); ``test()`` gives the test set, which the rewrite protocol
    evaluates on.
    """

    test: Callable[[], Images] = field(kw_only=True)

    def train_test(self, seed: int = 0) -> tuple[Images, Images]:
        """Every training and every test image (the seed chooses nothing here: there is no subsampling)."""
        return self.load(self.classes), self.test()


def _folder(root: Path, download: bool) -> Path:
    def fetch() -> None:
        import torchvision

        guarded_download(lambda: torchvision.datasets.CIFAR10(str(root), train=True, download=True),
                         "CIFAR-10", root, f"the unpacked cifar-10-batches-py/ folder at {root / FOLDER}")

    return find_folder(
        root, FOLDER, (*TRAIN, TEST, META),
        fetch if download else None,
        f"CIFAR-10 not found: expected {root / FOLDER}/data_batch_1…5, test_batch and batches.meta (torchvision's "
        "layout). Point --data-root at the folder that contains cifar-10-batches-py/, or add --download on a "
        "machine with internet access.")


def _read(files: list[Path], names: tuple[str, ...]) -> ImageTensors:
    images, labels = [], []
    for path in files:
        batch = read_pickle(path)
        try:
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        except (KeyError, ValueError) as exc:
            raise DatasetNotFound(f"{path} does not hold CIFAR-10 data ({exc})") from None
        if len(labels[-1]) != len(images[-1]) or labels[-1].min() < 0 or labels[-1].max() >= len(names):
            raise DatasetNotFound(f"{path}: {len(images[-1])} images but the labels do not match batches.meta")
    return ImageTensors(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), names)


def cifar10(root: str | Path, download: bool = False) -> TrainTestSource:
    """CIFAR-10's 50,000 training and 10,000 test images (10 classes; no built-in RFF splits)."""
    folder = _folder(Path(root).expanduser(), download)
    names = tuple(str(n) for n in read_pickle(folder / META)["label_names"])
    train = _read([folder / f for f in TRAIN], names)
    test = _read([folder / TEST], names)

    return TrainTestSource("CIFAR-10", names, lambda wanted: take_classes(train, wanted), {}, root_setting(folder),
                           test=lambda: test)
