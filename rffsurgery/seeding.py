"""Seeds derived from (run seed, stage, epoch): the basis of exact resume and of fair branches.

Every epoch re-seeds its own generators from a hash of *what* it is (``("base", 3)``,
``("branch", 5)``, ``("transfer", 2)``) instead of continuing one global random
stream.  Consequences we rely on:

* the two branches of the protocol see the same batch order, augmentation and
  dropout masks in the branch epoch, so freezing is the only difference;
* a run resumed from a checkpoint replays exactly the random numbers an
  uninterrupted run would have drawn, without storing generator states;
* the two transfer runs share a common random generator, as the paper requires.
"""

from __future__ import annotations

import hashlib
import random

import torch

__all__ = ["derive_seed", "generator", "seed_everything"]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and the labels in ``parts``."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator for shuffling and augmentation (CPU so that every device draws the same numbers)."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


def seed_everything(seed: int, *parts: object) -> None:
    """Seed the global generators (weight init, dropout) of torch on every device and of ``random``."""
    value = derive_seed(seed, *parts)
    torch.manual_seed(value)
    random.seed(value)
