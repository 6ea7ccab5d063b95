"""The RFF paper's ten CIFAR-100 splits (Table 5) and user-defined class splits.

Experiments 1.k and 2.k use the same split k; they differ only in how the number of
base epochs is chosen (fixed, or the onset of overfitting), which is a protocol option.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from math import comb

import torch

from ..errors import InvalidArgument
from ..seeding import generator

__all__ = ["CIFAR100_SPLITS", "Split", "random_splits", "resolve_splits"]


@dataclass(frozen=True)
class Split:
    """Base classes (trained first) and transfer classes (never seen before the transfer step)."""

    name: str
    base: tuple[str, ...]
    transfer: tuple[str, ...]

    def __post_init__(self) -> None:
        both = set(self.base) & set(self.transfer)
        if both:
            raise InvalidArgument(f"split {self.name}: class(es) {', '.join(sorted(both))} are both base and transfer")
        if len(self.base) < 2 or not self.transfer:
            raise InvalidArgument(f"split {self.name}: needs at least 2 base classes and 1 transfer class")
        for group in (self.base, self.transfer):
            if len(set(group)) != len(group):
                raise InvalidArgument(f"split {self.name}: a class is listed twice in {', '.join(group)}")


def _split(name: str, base: str, transfer: str) -> Split:
    return Split(name, tuple(base.split()), tuple(transfer.split()))


CIFAR100_SPLITS: dict[str, Split] = {s.name: s for s in (
    _split("1.1", "apple hamster baby bear clock bee bicycle bottle", "beetle beaver"),
    _split("1.2", "bridge bus camel girl can castle caterpillar cattle", "bowl boy"),
    _split("1.3", "chimpanzee cloud bed cockroach couch mountain cup dinosaur", "chair crocodile"),
    _split("1.4", "dolphin flatfish forest fox butterfly house kangaroo keyboard", "elephant aquarium_fish"),
    _split("1.5", "lamp lawn_mower leopard lion lizard lobster turtle maple_tree", "crab motorcycle"),
    _split("1.6", "mouse mushroom oak_tree orange orchid otter pickup_truck pine_tree", "palm_tree pear"),
    _split("1.7", "plain plate poppy possum porcupine raccoon ray road", "rabbit rocket"),
    _split("1.8", "rose sea seal shrew skyscraper snail snake spider", "skunk shark"),
    _split("1.9", "squirrel train sweet_pepper table tank television tiger tractor", "telephone streetcar"),
    _split("1.10", "sunflower trout wardrobe whale willow_tree wolf woman worm", "man tulip"),
)}


def resolve_splits(names: str, table: dict[str, Split] | None = None) -> list[Split]:
    """``"all"``, ``"1.3"``, ``"2.3"`` (same split as 1.3), ``"3"``, a glob (``"hard.*"``: every matching name,
    in table order) or a comma list of those."""
    table = CIFAR100_SPLITS if table is None else table
    if names.strip() == "all":
        return list(table.values())
    out = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if any(c in name for c in "*?["):
            matches = [split for key, split in table.items() if fnmatch.fnmatchcase(key, name)]
            if not matches:
                raise InvalidArgument(f"split pattern {name!r} matches none of {', '.join(table)}")
            out += matches
            continue
        key = name if name in table else f"1.{name.split('.', 1)[1]}" if name.startswith("2.") else f"1.{name}"
        if key not in table:
            raise InvalidArgument(f"unknown split {name!r}; known: {', '.join(table)} or 'all'")
        out.append(Split(name, table[key].base, table[key].transfer))
    return out


def random_splits(classes: tuple[str, ...], count: int, base_size: int, transfer_size: int) -> list[Split]:
    """``count`` distinct seeded random splits ``r1 … rK`` of ``classes`` into base and transfer sets.

    One generator (fixed seed, independent of the run seeds) draws permutations of the
    classes; the first ``base_size`` are the base, the next ``transfer_size`` the transfer
    set, and a draw that repeats an earlier split is skipped.  So ``random:K`` is
    the same list on every machine, and its first K splits are those of ``random:K+1``.
    """
    if base_size < 2 or transfer_size < 1 or base_size + transfer_size > len(classes):
        raise InvalidArgument(f"random splits need 2+ base and 1+ transfer classes out of {len(classes)}, "
                         f"got {base_size}/{transfer_size}")
    possible = comb(len(classes), transfer_size) * (comb(len(classes) - transfer_size, base_size))
    if not 1 <= count <= possible:
        raise InvalidArgument(f"random:{count}: choose 1…{possible} distinct {base_size}/{transfer_size} splits "
                         f"of {len(classes)} classes")
    g = generator(0, "random-splits", len(classes), base_size, transfer_size)
    out: list[Split] = []
    seen: set[tuple[frozenset[str], frozenset[str]]] = set()
    while len(out) < count:
        order = [classes[i] for i in torch.randperm(len(classes), generator=g).tolist()]
        base, transfer = tuple(order[:base_size]), tuple(order[base_size:base_size + transfer_size])
        key = (frozenset(base), frozenset(transfer))
        if key not in seen:
            seen.add(key)
            out.append(Split(f"r{len(out) + 1}", base, transfer))
    return out
