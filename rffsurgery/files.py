"""Writing user-visible output files: never over an existing file unless asked, always atomically.

Every command that writes a file the user names (plans, plots, recipes, ONNX files,
reports) goes through :func:`prepare_output` and :func:`atomic_output`, so that

* an existing file is replaced only with ``force=True`` (the CLI's ``--force``),
* a file the command is reading (the model's own source, the plan being checked)
  is never written over, even with ``force``,
* a crash never leaves half a file: the data goes to a temporary file in the same
  folder that is flushed to disk and renamed over the target at the end (the one
  atomic writer: plans, plots, recipes, reports and training checkpoints use it), and
* the file gets ordinary permissions (``0666`` less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputExists, RffError, first_line

__all__ = ["atomic_output", "check_folder", "load_tensors", "prepare_folder", "prepare_output", "write_report_files",
           "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parent_error(parent: Path, option: str, exc: OSError) -> RffError:
    return RffError(f"cannot create the folder {parent} for {option} ({exc.strerror or exc}); choose another path")


def check_folder(path: str | os.PathLike[str], *, option: str = "the output folder") -> Path:
    """Check, creating nothing, that the output folder ``path`` exists or can be created; returns it as a Path.

    A file at ``path`` or at one of its parents, or a first existing ancestor that is not
    writable, is an :class:`RffError`.
    """
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise RffError(f"{option} {path}: {existing} is a file, not a folder; choose another path")
    _check_writable(existing, option)
    return path


def prepare_folder(path: str | os.PathLike[str], *, option: str = "the output folder") -> Path:
    """Create the output folder ``path`` (and its parents) if needed; :class:`RffError` when that is impossible.

    An existing file at ``path`` (or at one of its parents) is refused, never replaced.
    """
    path = check_folder(path, option=option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _parent_error(path, option, exc) from None
    return path


def _check_writable(folder: Path, option: str) -> None:
    """Create and remove a probe file: permission bits say nothing for root or on a read-only file system."""
    try:
        fd, name = tempfile.mkstemp(prefix=".rffsurgery-probe.", dir=folder)
    except OSError as exc:
        raise RffError(f"the folder {folder} is not writable ({exc.strerror or exc}); "
                       f"choose another path for {option}") from None
    os.close(fd)
    os.unlink(name)


def prepare_output(path: str | os.PathLike[str], *, force: bool = False, option: str = "the output",
                   reading: Iterable[str | os.PathLike[str]] = (), make_parents: bool = False) -> Path:
    """Check that ``path`` can be written; return it as a :class:`Path`.

    Raises :class:`RffError` (one line, with the fix) when the parent folder is missing,
    is not a folder or is not writable, when ``path`` is a folder, when it is one of the
    files being read, or (:class:`OutputExists`) when it exists and ``force`` is false.
    """
    path = Path(path)
    parent = path.parent
    if make_parents:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _parent_error(parent, option, exc) from None
    if not parent.exists():
        raise RffError(f"the folder {parent} for {option} does not exist; create it or choose another path")
    if not parent.is_dir():
        raise RffError(f"{parent} is not a folder, so {option} {path} cannot be written; choose another path")
    _check_writable(parent, option)
    if path.is_dir():
        raise RffError(f"{path} is a folder; give a file name for {option}")
    if path.exists():
        for source in reading:
            with contextlib.suppress(OSError):
                if path.samefile(source):
                    raise RffError(f"{option} {path} is also an input of this command; write it somewhere else")
        if not force:
            raise OutputExists(f"{path} already exists: pass --force to replace it, or choose another path")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, else removed.

    ``suffix`` keeps an extension for writers that look at it (matplotlib's ``savefig``).
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _flush(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise _write_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _flush(path: Path) -> None:
    """Force the data to disk before the rename, so a power cut leaves the old file or the new one, never an empty one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> RffError:
    return RffError(f"cannot write {path} ({exc.strerror or exc}); choose another path (nothing was written)")


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically with ordinary permissions (checks are the caller's: :func:`prepare_output`)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_report_files(out: str | os.PathLike[str], report: dict, table: str, markdown: str) -> Path:
    """An experiment's ``report.json``, ``report.txt`` and ``report.md`` in ``out`` (created): one layout for
    every experiment, so ``bench_science --publish`` and readers find the same three files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    write_text(out / "report.txt", table + "\n")
    write_text(out / "report.md", markdown + "\n")
    return out


def load_tensors(path: str | os.PathLike[str], error: type[RffError], what: str, fix: str) -> object:
    """``torch.load(path, weights_only=True)``, with every failure turned into ``error`` (one line).

    Every exception counts: torch's reader fails on foreign bytes with whatever its
    parser meets first (a text file gives ``IndexError: pop from empty list`` or a
    ``KeyError``), and a file that is not a complete torch archive is the user's to fix.
    The message gives our own reason: torch's message for a refused object advises
    ``weights_only=False``, which would run code from the file, so it is never passed on.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
        elif not zipfile.is_zipfile(path):
            reason = "not a complete torch archive: truncated, overwritten or never a torch file"
        elif isinstance(exc, pickle.UnpicklingError):
            reason = "it holds objects other than tensors and plain values, which are never unpickled"
        else:
            reason = first_line(exc)
        raise error(f"{what} {path} is corrupt or unreadable ({reason}). {fix}") from None
