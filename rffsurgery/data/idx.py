"""Reading the IDX files of MNIST and Fashion-MNIST (gzipped or not), with every field checked.

IDX (LeCun's format): a big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim``
32-bit big-endian sizes, then the data.  MNIST-family files are unsigned bytes
(type ``0x08``): ``idx3`` images ``(N, 28, 28)`` (magic ``0x00000803``) and ``idx1``
labels ``(N,)`` (magic ``0x00000801``).  A file may be gzipped (``.gz``, detected by
its content, not its name).  Every way a file can be wrong — missing, not IDX, the
wrong magic, a truncated body, trailing bytes, image/label counts that disagree, labels
out of range — raises :class:`IdxError` (a :class:`DatasetNotFound`) with one line
saying which file and what to do.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .base import DatasetNotFound

__all__ = ["IdxError", "find_idx", "read_idx", "read_pair"]

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
GZIP_MAGIC = b"\x1f\x8b"


class IdxError(DatasetNotFound):
    """An IDX file is missing, unreadable or inconsistent with its partner file."""


def _bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"{path}: cannot read it ({exc}); the file is damaged — reinstall or re-download it") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The unsigned-byte array stored in ``path``, whose header must carry ``magic``."""
    path = Path(path)
    raw = _bytes(path)
    if len(raw) < 4:
        raise IdxError(f"{path}: {len(raw)} bytes, too short for an IDX header; the file is damaged")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise IdxError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
                       f"({'images' if magic == IMAGES_MAGIC else 'labels'}); is it the right file?")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header ({len(raw)} of {header} bytes); the file is damaged")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IdxError(f"{path}: {what}: header says shape {shape} ({expected} bytes), file has {len(raw)} bytes; "
                       "the file is damaged — reinstall or re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_pair(images_path: Path, labels_path: Path, num_classes: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, side, side)`` and labels ``(N,)`` in ``[0, num_classes)``, checked against each other."""
    images, labels = read_idx(images_path, IMAGES_MAGIC), read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (side, side):
        raise IdxError(f"{images_path}: images are {images.shape[1]}×{images.shape[2]}, expected {side}×{side}")
    if len(images) != len(labels):
        raise IdxError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
                       "the two files come from different sets")
    if len(labels) and int(labels.max()) >= num_classes:
        raise IdxError(f"{labels_path}: label {int(labels.max())} out of range 0…{num_classes - 1}")
    return images, labels


def find_idx(root: Path, stem: str, subfolders: tuple[str, ...]) -> Path | None:
    """``stem`` or ``stem.gz`` in ``root`` or one of ``root/<subfolder>`` (torchvision: ``FashionMNIST/raw``)."""
    for folder in (root, *(root / s for s in subfolders)):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None
