"""The epoch loop against plain PyTorch, batching, augmentation, device choice and checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rffsurgery.train import Augment, CheckpointError, select_device
from rffsurgery.train.checkpoint import load_checkpoint, save_checkpoint
from rffsurgery.data.base import ImageTensors
from rffsurgery.data.folder import image_folder
from rffsurgery.train.loop import TensorBatches, make_batches, train_epoch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: the cores are shared

CPU = select_device("cpu")


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


@pytest.mark.parametrize("l1", [0.0, 1e-3])
def test_train_epoch_equals_a_hand_written_loop(l1):
    x, y = torch.randn(50, 3, 8, 8), torch.randint(0, 3, (50,))
    ours, theirs = tiny_model(), tiny_model()
    opt_a = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    plain = select_device("cpu", channels_last=False)  # bit-comparable with the NCHW hand loop
    stats = train_epoch(ours, TensorBatches(x, y, 16), opt_a, plain, epoch_seed=123, l1=l1)

    order = torch.randperm(50, generator=torch.Generator().manual_seed(123))  # documented batch order
    losses = []
    for i in range(0, 50, 16):
        xb, yb = x[order[i:i + 16]], y[order[i:i + 16]]
        ce = F.cross_entropy(theirs(xb), yb)
        penalty = sum(p.abs().sum() for p in theirs.parameters() if p.dim() > 1)
        opt_b.zero_grad()
        (ce + l1 * penalty).backward()
        opt_b.step()
        losses.append(ce.item() * len(yb))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert stats.loss == pytest.approx(sum(losses) / 50, rel=1e-5)
    assert stats.images == 50 and stats.seconds > 0


def test_tensor_batches_visit_every_sample_once_per_epoch():
    batches = TensorBatches(torch.arange(10.0), torch.arange(10), 4)
    assert len(batches) == 3
    seen = torch.cat([yb for _, yb in batches.epoch(torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert torch.cat([yb for _, yb in batches.epoch(None)]).tolist() == list(range(10))


def test_folder_batches_match_in_memory_batches(tmp_path):
    colours = [(255, 0, 0), (0, 128, 255)]
    for name, colour in zip("ab", colours):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), colour).save(tmp_path / name / f"{i}.png")
    files = image_folder(tmp_path, 8).load(["a", "b"])
    images = torch.tensor(colours, dtype=torch.uint8).repeat_interleave(3, 0).view(6, 3, 1, 1).expand(6, 3, 8, 8)
    tensors = ImageTensors(images.contiguous(), files.labels, files.classes)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    loader = list(make_batches(files, CPU, 4, workers=1).epoch(g()))
    memory = list(make_batches(tensors, CPU, 4).epoch(g()))
    assert len(loader) == len(memory) == 2
    for (xa, ya), (xb, yb) in zip(loader, memory):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(xa, xb)


def test_augment_flip_rotation_zoom():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5).repeat(8, 1, 1, 1)
    out = Augment(flip=True)(x, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    assert all(m or torch.equal(o, xi) for m, o, xi in zip(mirrored, out, x))
    assert 0 < sum(mirrored) < len(x)
    const = torch.full((4, 3, 9, 9), 0.7)
    turned = Augment(rotation=30, zoom=0.3)(const, torch.Generator().manual_seed(0))
    torch.testing.assert_close(turned, const)  # edge padding keeps a constant image constant
    ramp = torch.linspace(0, 1, 9).view(1, 1, 1, 9).expand(4, 3, 9, 9)
    a = Augment(rotation=30, zoom=0.3)(ramp, torch.Generator().manual_seed(1))
    assert not torch.allclose(a, ramp)
    assert torch.equal(a, Augment(rotation=30, zoom=0.3)(ramp, torch.Generator().manual_seed(1)))
    assert not Augment().active
    with pytest.raises(ValueError):
        Augment(zoom=1.5)


def test_device_selection():
    auto = select_device("auto")
    if torch.cuda.is_available():
        assert auto.device.type == "cuda" and auto.amp_dtype is not None and auto.channels_last
    else:
        assert auto.device.type in ("mps", "cpu") and auto.amp_dtype is None
    assert CPU.device == torch.device("cpu") and CPU.channels_last and not CPU.pin_memory
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoints_roundtrip_and_refuse_bad_files(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    model = tiny_model()
    save_checkpoint(path, {"model": model.state_dict(), "history": [{"epoch": 1, "loss": 0.5}]})
    back = load_checkpoint(path)
    assert back["history"] == [{"epoch": 1, "loss": 0.5}]
    assert all(torch.equal(back["model"][k], v) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind

    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable.*left as it is"):
        load_checkpoint(path)
    assert path.read_bytes() == good[: len(good) // 2]  # untouched

    monkeypatch.chdir(tmp_path)
    torch.save({"format": "rffsurgery.train-checkpoint/1", "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="never unpickled") as refused:
        load_checkpoint(path)
    assert "weights_only" not in str(refused.value)  # torch's advice to disable the safety is not passed on
    assert not (tmp_path / "pwned").exists()

    torch.save({"something": 1}, path)
    with pytest.raises(CheckpointError, match="not a rffsurgery training checkpoint"):
        load_checkpoint(path)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"v": torch.ones(3)})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"v": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_build_model_sizes_the_head():
    from rffsurgery.train.model import build_model

    model, head, size = build_model("rff-base-cnn", 5, dropout=0.3)
    assert head == "classifier.3" and size == (3, 32, 32)
    dropout, linear = model.get_submodule(head)
    assert dropout.p == 0.3 and (linear.in_features, linear.out_features) == (64, 5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    tv, head, _ = build_model("resnet18", 4)
    assert head == "fc" and tv.fc.out_features == 4


@pytest.mark.parametrize("name", ["rff-base-cnn", "resnet18-32"])
def test_extract_features_gives_the_head_input_and_the_pooled_last_conv_maps(name):
    """Pooled features, computed by hand: the base CNN's ``features`` output averaged over H and W (not the
    64-d FC layer); in a ResNet the global average pool of layer4, which is the head's input itself."""
    from rffsurgery.models.zoo import resolve
    from rffsurgery.train.loop import extract_features

    torch.manual_seed(0)
    model = resolve(name).build("cpu", num_classes=3).eval()
    x = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        if name == "rff-base-cnn":
            maps = model.features(x)
            head_input = model.classifier[:-1](maps)
            model.classifier[-1] = nn.Identity()
        else:
            stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            maps = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
            head_input = maps.mean((2, 3))
            model.fc = nn.Identity()
    plain = select_device("cpu", channels_last=False)
    features, pooled = extract_features(model, TensorBatches(x, torch.zeros(10, dtype=torch.long), 4), plain, 4)
    assert torch.allclose(features.x, head_input, atol=1e-5)
    assert pooled.shape == (10, maps.shape[1]) and torch.allclose(pooled, maps.mean((2, 3)), atol=1e-5)
    no_maps = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))  # nothing 4-D to pool
    assert extract_features(no_maps, TensorBatches(x, torch.zeros(10, dtype=torch.long), 4), plain, 4)[1] is None
