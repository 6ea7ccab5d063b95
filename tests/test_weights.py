"""Trained weights for ERF maps: every accepted format loads the same tensors, nothing is unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rffsurgery.analysis.erf import erf, load_model
from rffsurgery.errors import InvalidArgument
from rffsurgery.models import RFFBaseCNN
from rffsurgery.surgery import rewrite, save
from rffsurgery.train.checkpoint import save_checkpoint
from rffsurgery.train.model import build_model


def _trained(seed: int = 5, classes: int = 8) -> torch.nn.Module:
    torch.manual_seed(seed)
    return RFFBaseCNN(num_classes=classes)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_dict_and_safetensors(tmp_path: Path) -> None:
    model = _trained()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "wrapped.pt", "w.safetensors"):
        loaded, _, label = load_model("rff-base-cnn", tmp_path / name)
        assert _same(loaded, model) and label.endswith(name)
    random, _, label = load_model("rff-base-cnn")
    assert not _same(random, model) and label == "random init (seed 0)"


def test_trainer_checkpoint_with_its_own_head(tmp_path: Path) -> None:
    """The trainer resizes the output layer (here 5 classes behind dropout): the loader does the same."""
    model, _, _ = build_model("rff-base-cnn", 5, dropout=0.2)
    save_checkpoint(tmp_path / "checkpoint.pt", {"stage": "base", "model": model.state_dict()})
    loaded, _, _ = load_model("rff-base-cnn", tmp_path / "checkpoint.pt")
    assert _same(loaded, model)


def test_rewrite_folder(tmp_path: Path) -> None:
    done = rewrite("rff-base-cnn", meta_groups=4)
    save(done, tmp_path / "rw")
    loaded, _, _ = load_model("rff-base-cnn", tmp_path / "rw")
    assert _same(loaded, done.after)
    # the ERF reads the rewritten graph, whose convs are the original's: same RF box
    result = erf("rff-base-cnn", images=1, weights=tmp_path / "rw")
    assert result.nodes[0].node == "features.16" and result.weights.endswith("rw")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Payload()}, f, protocol=2)
    with pytest.raises(InvalidArgument, match="is corrupt or unreadable"):
        load_model("rff-base-cnn", path)


def test_weights_for_another_model_are_refused(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(InvalidArgument, match="do not fit"):
        load_model("rff-base-cnn", tmp_path / "other.pt")
    torch.save(_trained(classes=3).state_dict(), tmp_path / "shape.pt")
    with pytest.raises(InvalidArgument, match="do not fit"):
        load_model("rff-base-cnn", tmp_path / "shape.pt")
