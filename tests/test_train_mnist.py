"""MNIST-family data: the IDX reader (good and corrupt files, both layouts), the source, splits, the CLI.

Every IDX file here is written by the test itself (``_write_idx``), byte by byte
from the format's definition, so the suite needs no dataset package.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rffsurgery.cli import main
from rffsurgery.errors import InvalidArgument, RffError
from rffsurgery.train import DatasetNotFound, random_splits, resolve_splits
from rffsurgery.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxError, read_idx
from rffsurgery.data import sample_inputs
from rffsurgery.data.mnist import FASHION_CLASSES, FASHION_SPLITS, fit_side, mnist_source

STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """IDX by its definition: 0, 0, type 0x08 (ubyte), ndim, big-endian int32 sizes, then the bytes."""
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _dataset(folder: Path, train_per_class: int = 12, test_per_class: int = 5, gz: bool = True,
             classes: int = 10) -> dict[str, np.ndarray]:
    """Tiny MNIST-shaped files; image pixel (0, 0) holds the label so tests can check which image went where."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for part, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), per).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels
        images[:, 0, 1] = np.arange(len(labels)) % 256  # identifies the image within its part
        _write_idx(folder / STEMS[part][0], images, gz)
        _write_idx(folder / STEMS[part][1], labels, gz)
        arrays[part] = images
    return arrays


# -- the IDX reader ----------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 251
    path = _write_idx(tmp_path / "x-idx3-ubyte", images, gz)
    assert np.array_equal(read_idx(path, IMAGES_MAGIC), images)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "y-idx1-ubyte", labels, gz), LABELS_MAGIC), labels)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_both_layouts_load(tmp_path, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    arrays = _dataset(folder, gz=layout == "flat")
    source = mnist_source("fashion-mnist", tmp_path)
    assert source.classes == FASHION_CLASSES and len(source.train[1]) == 120 and len(source.test[1]) == 50
    assert torch.equal(source.train[0], torch.from_numpy(arrays["train"]))
    assert torch.equal(source.train[1], torch.from_numpy(arrays["train"][:, 0, 0].astype(np.int64)))


def _corrupt(tmp_path: Path, how: str) -> None:
    _dataset(tmp_path, gz=False)
    images = tmp_path / STEMS["train"][0]
    labels = tmp_path / STEMS["train"][1]
    raw = images.read_bytes()
    if how == "magic":
        images.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    elif how == "truncated":
        images.write_bytes(raw[:-100])
    elif how == "trailing":
        images.write_bytes(raw + b"\x00")
    elif how == "count":
        _write_idx(labels, np.zeros(119, dtype=np.uint8))
    elif how == "label-range":
        _write_idx(labels, np.full(120, 10, dtype=np.uint8))
    elif how == "size":
        _write_idx(images, np.zeros((120, 27, 27), dtype=np.uint8))
    elif how == "gzip":
        images.with_name(images.name + ".gz").write_bytes(gzip.compress(raw)[:50])
        images.unlink()
    elif how == "empty":
        images.write_bytes(b"")


@pytest.mark.parametrize("how, words", [
    ("magic", "magic number 0x00000801, expected 0x00000803"), ("truncated", "truncated"),
    ("trailing", "trailing bytes"), ("count", "120 images but"), ("label-range", "label 10 out of range 0…9"),
    ("size", "27×27, expected 28×28"), ("gzip", "cannot read it"), ("empty", "too short"),
])
def test_corrupt_files_fail_with_one_line(tmp_path, how, words):
    _corrupt(tmp_path, how)
    with pytest.raises(IdxError) as info:
        mnist_source("fashion-mnist", tmp_path)
    message = str(info.value)
    assert words in message and "\n" not in message and isinstance(info.value, DatasetNotFound)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
        mnist_source("fashion-mnist", tmp_path)
    _dataset(tmp_path)
    (tmp_path / (STEMS["test"][1] + ".gz")).unlink()
    with pytest.raises(DatasetNotFound, match="no t10k-labels-idx1-ubyte"):
        mnist_source("mnist", tmp_path)


# -- images for the model --------------------------------------------------------------

def test_fit_side_pads_to_32_and_replicates_channels():
    images = torch.randint(1, 256, (2, 28, 28), dtype=torch.uint8)
    out = fit_side(images, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert all(torch.equal(out[:, c, 2:30, 2:30], images) for c in range(3))
    border = out.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0  # only zeros were added
    assert torch.equal(fit_side(images, 28)[:, 0], images)


def test_fit_side_resizes_other_sizes():
    flat = torch.full((1, 28, 28), 77, dtype=torch.uint8)
    out = fit_side(flat, 64)
    assert out.shape == (1, 3, 64, 64) and bool((out == 77).all())  # a constant image stays constant


# -- the source --------------------------------------------------------------------------

def test_protocol_data_uses_test_images_for_validation_and_subsamples_train(tmp_path):
    arrays = _dataset(tmp_path)
    source = mnist_source("fashion-mnist", tmp_path, per_class=4)
    split = FASHION_SPLITS["shirt-pullover"]
    data = source.protocol_data(split, seed=0)
    assert (len(data.base_train), len(data.transfer_train)) == (8 * 4, 2 * 4)
    assert (len(data.base_val), len(data.transfer_val)) == (8 * 5, 2 * 5)  # every test image (≤ 250 per class)
    for images, part in ((data.transfer_train, "train"), (data.transfer_val, "test")):
        original = images.images[:, 0, 2, 2]  # pixel (0, 0) after padding: the original label
        assert torch.equal(original.long(), torch.tensor([FASHION_CLASSES.index(split.transfer[i])
                                                          for i in images.labels]))
        ids = set(images.images[:, 0, 2, 3].tolist())
        assert ids <= set(arrays[part][:, 0, 1].tolist())
    again = source.protocol_data(split, seed=0)
    other = source.protocol_data(split, seed=1)
    assert torch.equal(again.base_train.images, data.base_train.images)
    assert not torch.equal(other.base_train.images, data.base_train.images)
    # a class gets the same subset whichever split it is in
    shirt_a = data.transfer_train.images[data.transfer_train.labels == 0]
    in_base = source.protocol_data(FASHION_SPLITS["trouser-bag"], seed=0).base_train
    shirt_b = in_base.images[in_base.labels == in_base.classes.index("shirt")]
    assert torch.equal(shirt_a, shirt_b)


def test_base_validation_takes_the_first_test_images_of_each_class(tmp_path):
    arrays = _dataset(tmp_path)
    source = mnist_source("fashion-mnist", tmp_path, base_val_per_class=2)
    data = source.protocol_data(FASHION_SPLITS["trouser-bag"], seed=3)
    assert len(data.base_val) == 8 * 2 and len(data.transfer_val) == 2 * 5 and len(data.base_train) == 8 * 12
    labels = arrays["test"][:, 0, 0]
    expected = [i for c in data.base_val.classes for i in np.flatnonzero(labels == FASHION_CLASSES.index(c))[:2]]
    assert data.base_val.images[:, 0, 2, 3].tolist() == [int(arrays["test"][i, 0, 1]) for i in expected]


def test_per_class_out_of_range(tmp_path):
    _dataset(tmp_path)
    with pytest.raises(InvalidArgument, match="--per-class 13"):
        mnist_source("fashion-mnist", tmp_path, per_class=13)


# -- splits ----------------------------------------------------------------------------

def test_named_fashion_splits_are_8_plus_2_of_all_classes():
    pairs = [s for s in FASHION_SPLITS.values() if not s.name.startswith("hard.")]
    assert len(pairs) == 5
    for split in pairs:
        assert len(split.base) == 8 and len(split.transfer) == 2
        assert sorted(split.base + split.transfer) == sorted(FASHION_CLASSES)
        assert split.name == "-".join(split.transfer)


def test_hard_splits_are_every_3_of_the_5_confusable_garments():
    garments = {"t-shirt", "pullover", "dress", "coat", "shirt"}
    hard = resolve_splits("hard.*", FASHION_SPLITS)
    assert len(hard) == 10 and len({frozenset(s.transfer) for s in hard}) == 10  # all C(5, 3), distinct
    for split in hard:
        assert set(split.transfer) <= garments and len(split.transfer) == 3 and len(split.base) == 7
        assert sorted(split.base + split.transfer) == sorted(FASHION_CLASSES)
        assert split.name == "hard." + "+".join(split.transfer)
    assert [s.name for s in resolve_splits("hard.*coat*,shirt-coat", FASHION_SPLITS)][-1] == "shirt-coat"
    with pytest.raises(InvalidArgument, match="split pattern 'easy.\\*' matches none"):
        resolve_splits("easy.*", FASHION_SPLITS)


def test_train_test_is_every_class_with_every_test_image(tmp_path):
    arrays = _dataset(tmp_path)
    train, test = mnist_source("fashion-mnist", tmp_path, per_class=4).train_test(seed=2)
    assert train.classes == test.classes == FASHION_CLASSES
    assert torch.bincount(train.labels).tolist() == [4] * 10 and len(test) == len(arrays["test"])
    assert torch.equal(train.images[:, 0, 2, 2].long(), train.labels)  # pixel (0, 0): the original label


def test_random_splits_are_distinct_seeded_and_nested():
    ten = random_splits(FASHION_CLASSES, 10, 8, 2)
    assert [s.name for s in ten] == [f"r{i}" for i in range(1, 11)]
    assert len({frozenset(s.transfer) for s in ten}) == 10
    assert all(sorted(s.base + s.transfer) == sorted(FASHION_CLASSES) for s in ten)
    assert random_splits(FASHION_CLASSES, 10, 8, 2) == ten
    assert random_splits(FASHION_CLASSES, 3, 8, 2) == ten[:3]
    assert len(random_splits(FASHION_CLASSES, 45, 8, 2)) == 45  # every pair, C(10, 2)
    with pytest.raises(InvalidArgument, match="choose 1…45"):
        random_splits(FASHION_CLASSES, 46, 8, 2)


# -- the CLI ("done when" of issue 11, on tiny files) -----------------------------------------

def test_cli_done_when_command(tmp_path):
    _dataset(tmp_path / "data", train_per_class=20, test_per_class=10)
    out = tmp_path / "run"
    args = ["train", "--data", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--split", "random:1",
            "--per-class", "10", "--epochs", "1", "--transfer-epochs", "2", "--probe", "lbfgs", "--control",
            "both", "--out", str(out), "--no-plots", "--threads", "1", "--batch-size", "32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    run = report["runs"][0]
    assert run["probe"] == "lbfgs" and run["delta"] == pytest.approx(run["rff_lbfgs"] - run["normal_lbfgs"])
    assert run["aa_delta"] == pytest.approx(run["aa_lbfgs"] - run["normal_lbfgs"])
    assert {"normal_sgd_final", "rff_lbfgs_pooled", "aa_sgd_final", "aa_lbfgs_converged"} <= set(run)
    assert not any(key.endswith("sgd_best") for key in run)  # no epoch is chosen on the test images
    assert run["placebo_delta"] == pytest.approx(run["placebo_lbfgs"] - run["normal_lbfgs"])
    for label in ("RFF − normal", "placebo − normal", "A/A − normal", "RFF − placebo"):
        assert label in result.output
    assert "grey replicated to 3 channels, 28×28 zero-padded to 32×32; validation on the official test" in result.output
    assert "SGD head (last epoch)" in (out / "report.txt").read_text()


def test_cli_rejects_bad_random_split_and_per_class(tmp_path):
    _dataset(tmp_path)
    base = ["train", "--data", "fashion-mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]
    bad = CliRunner().invoke(main, base + ["--split", "random:x"])
    assert bad.exit_code == 1 and "random:K needs a whole number" in bad.output
    folder = CliRunner().invoke(main, ["train", "--data", "folder", "--data-root", str(tmp_path), "--per-class", "3"])
    assert folder.exit_code == 2 and "--per-class only applies with --data generated" in folder.output
    finetune = CliRunner().invoke(main, base + ["--finetune", "--probe", "lbfgs"])
    assert finetune.exit_code == 1 and "with --finetune use --probe sgd" in finetune.output


def test_errors_are_rff_errors():
    assert issubclass(IdxError, RffError)


# -- erf --data: the same registry as train --data ---------------------------------------

@pytest.mark.parametrize("name, title", [("fashion-mnist", "Fashion-MNIST"), ("mnist", "MNIST")])
def test_erf_reads_the_idx_files(tmp_path, name, title):
    """``erf --data`` offers the trainer's datasets: its inputs are the files' training images as read."""
    arrays = _dataset(tmp_path / name)
    done = CliRunner().invoke(main, ["erf", "rff-base-cnn", "--data", name, "--data-root", str(tmp_path / name),
                                     "--images", "2"])
    assert done.exit_code == 0, done.output
    assert f"data: 2 image(s) of {title}" in done.output
    inputs, described = sample_inputs(name, 3, (3, 32, 32), tmp_path / name, seed=0)
    assert described == f"3 image(s) of {title}" and inputs.shape == (3, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    pixels = ((inputs * std.view(3, 1, 1) + mean.view(3, 1, 1)) * 255).round().to(torch.uint8)
    train = torch.from_numpy(arrays["train"])
    for image in pixels:  # grey replicated to 3 channels, 28×28 centred on a 32×32 zero canvas
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        assert image[0, :2].sum() == 0 and image[0, :, :2].sum() == 0
        assert any(torch.equal(image[0, 2:30, 2:30], t) for t in train)
