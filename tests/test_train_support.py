"""Shared helpers for the trainer tests (no tests here): CIFAR-100 files in the real on-disk format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

# The 100 CIFAR-100 fine label names in label order, as in the dataset's `meta` file.
CIFAR100_NAMES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man
maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain
plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm""".split()


def write_cifar100(root: Path, per_class: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write ``root/cifar-100-python/{train,test,meta}`` as protocol-2 pickles with torchvision's keys.

    Returns the (N, 3072) uint8 rows and fine labels written to ``train``.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    labels = np.repeat(np.arange(100), per_class)
    rng.shuffle(labels)
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    for name, rows, fine in (("train", data, labels), ("test", data[:100], labels[:100])):
        entry = {"filenames": [f"img_{i}.png" for i in range(len(fine))], "batch_label": f"{name} batch",
                 "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(), "data": rows}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": [f"super{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return data, labels
