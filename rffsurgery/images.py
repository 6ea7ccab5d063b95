"""Input images for ERF and overlays: files as the model sees them, and the trainer's data sources.

An image file is read as RGB, resized so that it covers the model's input and
centre-cropped to it (torchvision's ``Resize`` + ``CenterCrop``), so what is drawn is
exactly what the model reads.  Image data is then scaled to [0, 1] and normalised
with the ImageNet mean and standard deviation (the usual preprocessing of the zoo's
models); ``noise`` is standard normal, already in that range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .errors import InvalidArgument

__all__ = ["DATA_KINDS", "normalise", "read_image", "sample_images"]

DATA_KINDS = ("noise", "generated", "folder", "cifar100")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_image(path: str | Path, size: Sequence[int]) -> torch.Tensor:
    """An image file as a uint8 ``(3, H, W)`` tensor, resized to cover ``size`` and centre-cropped to it."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as F

    try:
        with Image.open(path) as img:
            image = F.pil_to_tensor(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidArgument(f"cannot read the image {path} ({exc}); give a PNG/JPEG file") from None
    return _fit(image, size)


def _fit(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    h, w = images.shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    resized = F.resize(images, [max(size[0], round(h * scale)), max(size[1], round(w * scale))], antialias=True)
    return F.center_crop(resized, list(size))


def normalise(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 RGB images → float model input with ``channels`` channels (grey for 1)."""
    x = images.float() / 255
    if channels == 1:
        return ((x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True) - 0.5) / 0.25
    if channels != 3:
        raise InvalidArgument(f"the model reads {channels} channels; image data has 3 (use --data noise)")
    return (x - torch.tensor(_MEAN).view(3, 1, 1)) / torch.tensor(_STD).view(3, 1, 1)


def sample_images(data: str, count: int, input_size: Sequence[int], root: str | Path | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, str]:
    """``count`` model inputs ``(count, *input_size)`` from ``data`` (see :data:`DATA_KINDS`) and a description.

    ``folder`` reads the image files under ``root`` (class sub-folders or not),
    ``cifar100`` the CIFAR-100 training set in torchvision's layout under ``root``,
    ``generated`` the trainer's offline shapes; images are picked at random with ``seed``.
    """
    if count < 1:
        raise InvalidArgument(f"the number of images must be at least 1, got {count}")
    channels, *spatial = input_size
    if len(spatial) != 2 and data != "noise":
        raise InvalidArgument(f"image data needs a 2-D input, the model reads {tuple(input_size)}; use noise")
    g = torch.Generator().manual_seed(seed)
    if data == "noise":
        return torch.randn((count, *input_size), generator=g), f"{count} standard-normal noise input(s)"
    if data == "generated":
        from .train.synthetic import SHAPES, render

        per_class = -(-count // len(SHAPES))
        images = render(list(SHAPES), per_class, seed, "erf").images
        pick = torch.randperm(len(images), generator=g)[:count]
        return normalise(_fit(images[pick], spatial), channels), f"{count} generated image(s)"
    if root is None:
        raise InvalidArgument(f"--data {data} needs --data-root")
    if data == "cifar100":
        from .train.cifar import cifar100

        source = cifar100(root)
        images = source.load(source.classes).images
        pick = torch.randperm(len(images), generator=g)[:count]
        return normalise(_fit(images[pick], spatial), channels), f"{count} CIFAR-100 training image(s)"
    if data == "folder":
        files = sorted(p for p in Path(root).expanduser().rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise InvalidArgument(f"no image files ({', '.join(EXTENSIONS)}) under {root}")
        pick = torch.randperm(len(files), generator=g)[:count].tolist()
        images = torch.stack([read_image(files[i], spatial) for i in pick])
        return normalise(images, channels), f"{len(pick)} image(s) from {root}"
    raise InvalidArgument(f"unknown data source {data!r}; choose one of {', '.join(DATA_KINDS)}")
