"""ImageFolder trees (``ROOT/<class name>/<image>``), e.g. a 10-class ImageNet subset.

Only the folders of the requested classes are listed, so a full ImageNet tree costs
nothing extra.  Images are decoded in DataLoader workers, resized (shorter side to
``size / 0.875``) and centre-cropped to ``size`` — the usual ImageNet evaluation
transform; augmentation happens later, on the training device, for every source alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .base import DatasetNotFound, ImageFiles, LabelledSource, ProtocolData, pick, root_setting
from .images import EXTENSIONS, decode
from .splits import Split

__all__ = ["FileDataset", "FolderSource", "image_folder"]


class FileDataset(Dataset):
    """Decodes :class:`ImageFiles` into uint8 ``(3, size, size)`` tensors."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.v2 import functional as F

        size = self.files.image_size
        image = decode(self.files.paths[i], DatasetNotFound, "remove or replace it")
        image = F.center_crop(F.resize(image, [round(size / 0.875)], antialias=True), [size, size])
        return image, self.files.labels[i]


def _check_images(paths: Sequence[str]) -> None:
    """Read each file's header (cheap: no pixels are decoded) so a non-image fails here, with its name."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetNotFound(f"{path} is not a readable image ({type(exc).__name__}); "
                                  "remove it or replace it with a real image") from None


@dataclass(frozen=True)
class FolderSource(LabelledSource):
    """An image folder: class sub-folders for the trainer; for the ERF any image below the root will do."""

    root: Path = field(kw_only=True)

    def sample(self, count: int, seed: int) -> ImageFiles:
        """``count`` image files from anywhere below the root (class sub-folders or not), picked with ``seed``."""
        files = sorted(str(p) for p in self.root.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise DatasetNotFound(f"no image files ({', '.join(EXTENSIONS)}) under {self.root}")
        labels = torch.zeros(len(files), dtype=torch.int64)
        return pick(ImageFiles(tuple(files), labels, ("image",), self.settings["image_size"]), count, seed)

    def protocol_data(self, split: Split, seed: int, fraction: float = 0.2) -> ProtocolData:
        if not self.classes:
            raise DatasetNotFound(f"{self.root} has no class sub-folders (expected {self.root}/<class name>/<images>)")
        return super().protocol_data(split, seed, fraction)


def image_folder(root: str | Path, image_size: int) -> FolderSource:
    """A protocol source over the class sub-folders of ``root`` (no built-in splits: pass class names).

    A folder of images without class sub-folders still serves :meth:`FolderSource.sample`
    (ERF inputs); the trainer refuses it.
    """
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DatasetNotFound(f"{root} is a file; --data-root takes the folder holding <class name>/<images>")
    if not root.is_dir():
        raise DatasetNotFound(f"image folder {root} does not exist (expected {root}/<class name>/<images>)")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes and not any(p.suffix.lower() in EXTENSIONS for p in root.iterdir()):
        raise DatasetNotFound(f"{root} has no class sub-folders (expected {root}/<class name>/<images>)")

    def load(wanted: Sequence[str]) -> ImageFiles:
        paths, labels = [], []
        for label, name in enumerate(wanted):
            files = sorted(str(p) for p in (root / name).iterdir() if p.suffix.lower() in EXTENSIONS)
            if not files:
                raise DatasetNotFound(f"{root / name} has no images ({', '.join(EXTENSIONS)})")
            _check_images(files)
            paths += files
            labels += [label] * len(files)
        return ImageFiles(tuple(paths), torch.tensor(labels, dtype=torch.int64), tuple(wanted), image_size)

    return FolderSource(f"image folder {root}", classes, load, {}, {**root_setting(root), "image_size": image_size},
                        root=root)
