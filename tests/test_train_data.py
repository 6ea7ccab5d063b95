"""Data sources of the trainer: CIFAR-100 files in the real format, ImageFolder trees, generated shapes, splits."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from rffsurgery.train import (CIFAR100_SPLITS, GENERATED_SPLITS, DatasetNotFound, Split, UnknownClassError, cifar100,
                              image_folder, resolve_splits)
from rffsurgery.data.base import ImageTensors, holdout
from rffsurgery.data.generated import SHAPES, GeneratedSource, _cue_box, _cue_colour, render
from test_train_support import CIFAR100_NAMES, write_cifar100

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: the cores are shared


# -- CIFAR-100 ---------------------------------------------------------------------------------------
def test_cifar_loader_agrees_with_torchvision(tmp_path, monkeypatch):
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    write_cifar100(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # our files are not the real md5
    reference = torchvision.datasets.CIFAR100(str(tmp_path), train=True, download=False)
    wanted = ["whale", "apple", "sweet_pepper"]
    ours = cifar100(tmp_path).load(wanted)
    assert ours.classes == tuple(wanted)
    for label, name in enumerate(wanted):
        k = reference.classes.index(name)
        expected = reference.data[np.asarray(reference.targets) == k]  # (n, 32, 32, 3) HWC
        got = ours.images[ours.labels == label].permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(got, expected)


def test_cifar_root_may_be_the_inner_folder(tmp_path):
    data, labels = write_cifar100(tmp_path)
    source = cifar100(tmp_path / "cifar-100-python")
    apples = source.load(["apple"]).images
    np.testing.assert_array_equal(apples.reshape(len(apples), -1).numpy(), data[labels == 0])
    assert source.classes == tuple(CIFAR100_NAMES)


def test_missing_cifar_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"cifar-100-python/train.*--download"):
        cifar100(tmp_path / "nowhere")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_tampered_cifar_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    write_cifar100(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").write_bytes(pickle.dumps({"fine_label_names": _Evil()}, protocol=2))
    with pytest.raises(DatasetNotFound, match="refusing to load posix.system|refusing to load os.system"):
        cifar100(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_unknown_class_names_get_suggestions(tmp_path):
    write_cifar100(tmp_path)
    source = cifar100(tmp_path)
    with pytest.raises(UnknownClassError, match=r"'aple' \(did you mean 'apple'"):
        source.protocol_data(Split("x", ("aple", "bear"), ("beaver",)), seed=0)


def test_protocol_data_holds_out_20_percent_of_each_class(tmp_path):
    write_cifar100(tmp_path, per_class=10)
    d = cifar100(tmp_path).protocol_data(CIFAR100_SPLITS["1.1"], seed=3)
    assert d.base_train.classes == CIFAR100_SPLITS["1.1"].base
    assert torch.bincount(d.base_val.labels).tolist() == [2] * 8
    assert torch.bincount(d.transfer_train.labels).tolist() == [8, 8]
    assert torch.bincount(d.transfer_val.labels).tolist() == [2, 2]


# -- hold-out ----------------------------------------------------------------------------------------
def test_holdout_is_a_stratified_partition():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 20)
    data = ImageTensors(torch.arange(len(labels)).view(-1, 1, 1, 1), labels, ("a", "b", "c"))
    train, val = holdout(data, 0.2, seed=1)
    ids = lambda d: set(d.images.flatten().tolist())  # noqa: E731
    assert ids(train) | ids(val) == set(range(35)) and not ids(train) & ids(val)
    assert torch.bincount(val.labels).tolist() == [2, 1, 4]
    assert ids(holdout(data, 0.2, seed=1)[1]) == ids(val)
    assert ids(holdout(data, 0.2, seed=2)[1]) != ids(val)


# -- ImageFolder -------------------------------------------------------------------------------------
COLOURS = {"cat": (200, 10, 30), "dog": (5, 120, 250), "emu": (90, 90, 0)}


def make_tree(root, per_class=3):
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40 + 7 * i, 50), colour).save(root / name / f"{i}.png")
    (root / "dog" / "notes.txt").write_text("not an image")


def test_image_folder_decodes_resizes_and_labels(tmp_path):
    from rffsurgery.data.folder import FileDataset

    make_tree(tmp_path)
    files = image_folder(tmp_path, 16).load(["emu", "cat"])
    assert files.classes == ("emu", "cat") and len(files) == 6
    dataset = FileDataset(files)
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
        colour = torch.tensor(COLOURS[files.classes[label]], dtype=torch.uint8)
        assert torch.equal(image, colour.view(3, 1, 1).expand(3, 16, 16))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match="does not exist"):
        image_folder(tmp_path / "missing", 32)
    with pytest.raises(DatasetNotFound, match="no class sub-folders"):
        image_folder(tmp_path, 32)
    make_tree(tmp_path)
    with pytest.raises(UnknownClassError, match="'dgo' \\(did you mean 'dog'"):
        image_folder(tmp_path, 32).protocol_data(Split("s", ("cat", "dgo"), ("emu",)), 0)


# -- generated data ----------------------------------------------------------------------------------
def test_generated_is_deterministic_and_seed_dependent():
    a, b = render(["disk", "star"], 4, 0, "r"), render(["disk", "star"], 4, 0, "r")
    assert torch.equal(a.images, b.images) and a.images.shape == (8, 3, 32, 32)
    assert not torch.equal(a.images, render(["disk", "star"], 4, 1, "r").images)
    assert a.labels.tolist() == [0] * 4 + [1] * 4


def test_cue_is_drawn_where_documented_only_on_base_training_images():
    split = GENERATED_SPLITS["g.1"]
    cued = GeneratedSource(per_class=10, cue=1.0).protocol_data(split, seed=0)
    plain = GeneratedSource(per_class=10, cue=0.0).protocol_data(split, seed=0)
    for label, name in enumerate(split.base):
        index = list(SHAPES).index(name)
        rows, cols = _cue_box(index, 32)
        patch = cued.base_train.images[cued.base_train.labels == label][:, :, rows, cols].float() / 255
        assert patch.shape[-2:] == (5, 5)  # round(5 * 32 / 32)
        expected = _cue_colour(index).view(1, 3, 1, 1)
        assert (patch - expected).abs().mean() < 0.05  # opaque patch + σ=0.05 noise
    outside = torch.ones(32, 32, dtype=torch.bool)
    for index in range(8):
        rows, cols = _cue_box(index, 32)
        outside[rows, cols] = False
    assert torch.equal(cued.base_train.images[..., outside], plain.base_train.images[..., outside])
    for part in ("base_val", "transfer_train", "transfer_val"):
        assert torch.equal(getattr(cued, part).images, getattr(plain, part).images)


def test_cue_anchors_are_the_corners_and_edge_midpoints():
    anchors = {(_cue_box(i, 32)[0].start, _cue_box(i, 32)[1].start) for i in range(8)}
    assert anchors == {(2, 2), (2, 25), (25, 2), (25, 25), (2, 13), (25, 13), (13, 2), (13, 25)}


# -- splits ------------------------------------------------------------------------------------------
def test_the_ten_splits_cover_cifar100_exactly_once():
    assert list(CIFAR100_SPLITS) == [f"1.{k}" for k in range(1, 11)]
    names = [c for s in CIFAR100_SPLITS.values() for c in s.base + s.transfer]
    assert sorted(names) == sorted(CIFAR100_NAMES)
    assert all(len(s.base) == 8 and len(s.transfer) == 2 for s in CIFAR100_SPLITS.values())
    assert CIFAR100_SPLITS["1.5"].transfer == ("crab", "motorcycle")


def test_resolve_splits():
    assert [s.name for s in resolve_splits("all")] == list(CIFAR100_SPLITS)
    two = resolve_splits("2.3")[0]
    assert two.name == "2.3" and two.base == CIFAR100_SPLITS["1.3"].base
    assert [s.name for s in resolve_splits("1.1, 7")] == ["1.1", "7"]
    with pytest.raises(ValueError, match="unknown split '1.11'"):
        resolve_splits("1.11")
    with pytest.raises(ValueError, match="both base and transfer"):
        Split("bad", ("a", "b"), ("b",))
