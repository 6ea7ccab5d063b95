"""Image files as the model sees them, and model-input normalisation (ERF inputs, overlays, folder data).

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

from ..errors import InvalidArgument, RffError

__all__ = ["EXTENSIONS", "fit", "normalise", "read_image"]

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def decode(path: str | Path, error: type[RffError], fix: str) -> torch.Tensor:
    """An image file as a uint8 ``(3, H, W)`` RGB tensor; any failure is ``error`` naming the file once.

    PIL's own messages repeat the path in quotes (``cannot identify image file '…'``), so
    the reason is given in our words; a file PIL refuses for any reason (not an image,
    truncated pixels, a decompression bomb) is the user's to replace.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as F

    try:
        with Image.open(path) as img:
            return F.pil_to_tensor(img.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        if isinstance(exc, UnidentifiedImageError):
            reason = "not an image format PIL reads"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = f"{type(exc).__name__}: {str(exc).replace(repr(str(path)), 'it')}"
        raise error(f"{path} cannot be decoded ({reason}); {fix}") from None


def read_image(path: str | Path, size: Sequence[int]) -> torch.Tensor:
    """An image file as a uint8 ``(3, H, W)`` tensor, resized to cover ``size`` and centre-cropped to it."""
    return fit(decode(path, InvalidArgument, "give a PNG/JPEG file"), size)


def fit(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """uint8 images ``(…, 3, h, w)`` resized to cover ``size`` (H, W) and centre-cropped to it."""
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
