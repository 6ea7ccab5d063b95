"""The Lightning callback under a real ``lightning.Trainer`` (CPU, tiny model, 3 epochs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rffsurgery import analyze, build_freeze_plan
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import Schedule

L = pytest.importorskip("lightning.pytorch")


class LitNet(L.LightningModule):
    """The usual layout: the network is an attribute of the LightningModule."""

    def __init__(self) -> None:
        super().__init__()
        self.net = RFFBaseCNN(width=8, hidden=16)  # small: Lightning runs it on CPU

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)


class Snapshots(L.Callback):
    """The network's parameters at the start of every epoch and at the end of training."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.Tensor]] = []

    def _take(self, pl_module) -> None:
        self.seen.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._take(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._take(pl_module)


def _fit(tmp_path, **trainer_options):
    """Fit LitNet for 3 epochs under a plan frozen in epoch 2; the callback and the parameter snapshots."""
    from rffsurgery.integrations.lightning import FreezePlanCallback

    torch.manual_seed(0)
    lit = LitNet()
    path = build_freeze_plan(analyze(lit.net), schedule=Schedule(epochs=(2,))).export(tmp_path / "plan.json")
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 8, (8,), generator=g))
    freezer, snapshots = FreezePlanCallback(path), Snapshots()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, callbacks=[freezer, snapshots],
                        enable_progress_bar=False, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=tmp_path, **trainer_options)
    environ = dict(os.environ)
    try:
        trainer.fit(lit, torch.utils.data.DataLoader(data, batch_size=4))
    finally:  # a DDP strategy leaves its one-process group and MASTER_ADDR, LOCAL_RANK, … behind
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
    assert all(p.requires_grad for p in lit.parameters())
    return freezer, snapshots.seen


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
@pytest.mark.parametrize("strategy", ["auto", "ddp_find_unused_parameters_true"])
def test_callback_freezes_exactly_the_scheduled_epochs(tmp_path, one_thread, strategy):
    freezer, seen = _fit(tmp_path, strategy=strategy)
    assert freezer.target_path == "net"
    planned = set(freezer.plan.parameter_names)
    assert len(seen) == 4  # start of epochs 1, 2, 3 and the end
    for epoch, (before, after) in enumerate(zip(seen, seen[1:]), start=1):
        unchanged = {n for n in before if torch.equal(before[n], after[n])}
        assert unchanged == (planned if epoch == 2 else set()), epoch


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated")
def test_callback_refuses_a_ddp_strategy_that_cannot_skip_frozen_parameters(tmp_path, one_thread):
    from rffsurgery.plan import PlanError

    with pytest.raises(PlanError, match="ddp_find_unused_parameters_true"):
        _fit(tmp_path, strategy="ddp")


def test_import_rffsurgery_does_not_import_lightning():
    code = "import sys, rffsurgery; print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "False"
