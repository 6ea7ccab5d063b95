"""CIFAR-100 from a local folder in torchvision's on-disk layout.

Expected: ``ROOT/cifar-100-python/{train,test,meta}`` (``ROOT`` may also be the
``cifar-100-python`` folder itself), exactly what ``torchvision.datasets.CIFAR100``
downloads and what the official tarball unpacks to.  The files are Python pickles,
so they are read with an unpickler that only accepts the handful of numpy names a
CIFAR pickle needs: a tampered file fails instead of running code.  The protocol uses
the 500 training images of each class (20% of them held out for validation), as the
paper does; the ``test`` file is not needed.
"""

from __future__ import annotations

import pickle
import socket
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .base import DatasetNotFound, ImageTensors, LabelledSource, root_setting
from .splits import CIFAR100_SPLITS

__all__ = ["cifar100", "find_folder", "guarded_download", "read_pickle", "take_classes"]

FOLDER = "cifar-100-python"


def _reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy ≥ 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,  # bytes in protocol-2 pickles
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR pickle")
        return allowed()


def read_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR pickle (Python 2 or 3 protocol) into a dict with ``str`` keys."""
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DatasetNotFound(f"{path} is not a readable CIFAR pickle ({exc}); "
                              "delete the folder and fetch it again with --download") from None
    if not isinstance(data, dict):
        raise DatasetNotFound(f"{path} is not a CIFAR pickle (a {type(data).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def find_folder(root: Path, folder: str, files: Sequence[str], download: Callable[[], Any] | None,
                missing: str) -> Path:
    """``root/folder`` (or ``root`` itself) when it holds ``files``; else run ``download`` or raise ``missing``."""
    for candidate in (root / folder, root):
        if all((candidate / f).is_file() for f in files):
            return candidate
    if download is not None:
        download()
        return root / folder
    raise DatasetNotFound(missing)


def guarded_download(fetch: Callable[[], Any], name: str, root: Path, instead: str) -> None:
    """Run torchvision's downloader with a 60 s socket timeout; a failure is one line saying what to do offline."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # a firewalled network fails within a minute instead of hanging
    try:
        fetch()
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad archive a RuntimeError
        reason = getattr(exc, "reason", None) or exc
        raise DatasetNotFound(f"could not download {name} into {root} ({' '.join(str(reason).split())[:160]}): "
                              f"without network access, put {instead}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _folder(root: Path, download: bool) -> Path:
    def fetch() -> None:
        import torchvision

        guarded_download(lambda: torchvision.datasets.CIFAR100(str(root), train=True, download=True),
                         "CIFAR-100", root, f"the unpacked cifar-100-python/ folder (train and meta) at {root / FOLDER}")

    return find_folder(
        root, FOLDER, ("train", "meta"),
        fetch if download else None,
        f"CIFAR-100 not found: expected {root / FOLDER}/train and …/meta (torchvision's layout). "
        "Point --data-root at the folder that contains cifar-100-python/, or add --download on a machine "
        "with internet access.")


def cifar100(root: str | Path, download: bool = False) -> LabelledSource:
    """The CIFAR-100 training set as a protocol source with the paper's ten splits."""
    folder = _folder(Path(root).expanduser(), download)
    meta = read_pickle(folder / "meta")
    if not isinstance(meta.get("fine_label_names"), (list, tuple)):
        raise DatasetNotFound(f"{folder / 'meta'} has no 'fine_label_names' list: not CIFAR-100's meta file "
                              "(CIFAR-10 has batches.meta); fetch CIFAR-100 again with --download")
    names = tuple(str(n) for n in meta["fine_label_names"])
    train = read_pickle(folder / "train")
    try:
        images = np.asarray(train["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(train["fine_labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise DatasetNotFound(f"{folder / 'train'} does not hold CIFAR-100 data ({exc})") from None
    if len(labels) != len(images) or labels.min() < 0 or labels.max() >= len(names):
        raise DatasetNotFound(f"{folder / 'train'}: {len(images)} images but labels do not match the meta file")
    everything = ImageTensors(torch.from_numpy(images), torch.from_numpy(labels), names)
    return LabelledSource("CIFAR-100", names, lambda wanted: take_classes(everything, wanted), CIFAR100_SPLITS,
                          root_setting(folder))


def take_classes(data: ImageTensors, wanted: Sequence[str]) -> ImageTensors:
    """The images of the ``wanted`` classes of ``data``, relabelled by their position in ``wanted``."""
    ids = [data.classes.index(w) for w in wanted]
    keep = torch.isin(data.labels, torch.tensor(ids))
    relabel = torch.full((len(data.classes),), -1, dtype=torch.int64)
    relabel[ids] = torch.arange(len(ids))
    return ImageTensors(data.images[keep].clone(), relabel[data.labels[keep]], tuple(wanted))
