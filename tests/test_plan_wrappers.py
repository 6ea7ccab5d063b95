"""Plans applied through wrappers: DataParallel, DistributedDataParallel, torch.compile, a module holding the network.

The ground truth is what an optimizer step does to the planned parameters (bit-identical
while frozen, moved otherwise), not which path the search reports.
"""

from __future__ import annotations

import datetime
import logging

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from rffsurgery import analyze, build_freeze_plan, ddp_frozen, freeze
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import FreezeSchedule, PlanError, Schedule


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny steps: a second OpenMP thread only adds contention."""


@pytest.fixture()
def net():
    torch.manual_seed(0)
    return RFFBaseCNN()


@pytest.fixture()
def plan(net):
    return build_freeze_plan(analyze(net), schedule=Schedule(epochs=(2,)))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 8, (4,), generator=g)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def _moved(net: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters()}


class Holder(nn.Module):
    """Like a LightningModule: the network is an attribute, next to other modules (here a decoy first)."""

    def __init__(self, net: nn.Module, decoy: nn.Module | None = None) -> None:
        super().__init__()
        if decoy is not None:
            self.teacher = decoy  # same parameter names as the planned network, other graph
        self.net = net
        self.loss = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    "wrap, path",
    [
        (lambda m: m, ""),
        (DataParallel, "module"),
        (lambda m: torch.compile(m, backend="eager"), "_orig_mod"),
        (lambda m: Holder(m, decoy=RFFBaseCNN(width=16)), "net"),
    ],
    ids=["bare", "dataparallel", "compile", "holder"],
)
def test_schedule_finds_the_network_and_freezes_it_through_the_wrapper(net, plan, wrap, path, caplog):
    wrapped = wrap(net)
    with caplog.at_level(logging.INFO, logger="rffsurgery.plan"):
        schedule = FreezeSchedule(wrapped, plan)
    assert schedule.target_path == path and schedule.target is net
    assert (f"applies to '{path}'" in caplog.text) == bool(path)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for epoch in (1, 2, 3):
        before = _snapshot(net)
        with schedule.epoch(epoch) as frozen:
            _step(wrapped, optimizer, seed=epoch)
        moved = _moved(net, before)
        if epoch == 2:
            assert frozen == [f"{path}.{n}" if path else n for n in plan.parameter_names]
            assert moved == set(dict(net.named_parameters())) - set(plan.parameter_names)
        else:
            assert moved == set(dict(net.named_parameters()))


def test_nothing_matches_says_what_was_tried(plan):
    with pytest.raises(PlanError, match=r"no submodule of Holder matches the plan .* tried 'net' \(RFFBaseCNN\) of "
                                        r"Holder: the graph up to the frozen layers differs.*pass the network"):
        FreezeSchedule(Holder(RFFBaseCNN(width=16)), plan)
    with pytest.raises(PlanError, match=r"no parameter\(s\) features.6.weight.*nor does any of its submodules; "
                                        r"pass the network the plan was made for"):
        freeze(Holder(nn.Linear(2, 2)), plan)


@pytest.fixture()
def gloo(tmp_path):
    """A one-process gloo group for the test, destroyed afterwards."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    yield
    dist.destroy_process_group()


def test_ddp_frozen_epoch_runs_and_keeps_frozen_weights(gloo, net, plan):
    ddp = DistributedDataParallel(net)
    assert FreezeSchedule(ddp, plan).target_path == "module"
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    _step(ddp, optimizer, seed=1)
    with pytest.raises(PlanError, match="ddp_frozen"):  # would fail at its second step
        freeze(ddp, plan)
    before = _snapshot(net)
    with ddp_frozen(ddp, plan) as frozen_ddp:
        assert frozen_ddp is not ddp and frozen_ddp.module is net
        for seed in (2, 3, 4):
            _step(frozen_ddp, optimizer, seed)
    assert _moved(net, before) == set(dict(net.named_parameters())) - set(plan.parameter_names)
    assert all(p.requires_grad for p in net.parameters())
    for seed in (5, 6):  # the original wrapper trains everything again
        _step(ddp, optimizer, seed)
    assert _moved(net, before) == set(dict(net.named_parameters()))


def test_ddp_with_find_unused_parameters_can_freeze_in_place(gloo, net, plan):
    ddp = DistributedDataParallel(net, find_unused_parameters=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    _step(ddp, optimizer, seed=1)
    before = _snapshot(net)
    with FreezeSchedule(ddp, plan).epoch(2):
        for seed in (2, 3):
            _step(ddp, optimizer, seed)
    assert _moved(net, before) == set(dict(net.named_parameters())) - set(plan.parameter_names)
