"""Every branch arm starts from the same saved state: weights *and* optimizer moments (issue 19).

The arms of the branch epoch (normal, RFF, and the controls) must differ only by their
manipulation.  A spy on ``train_epoch`` records, at the start of each arm's epoch, a deep
copy of the model's weights and of the optimizer's state (Adam: step counts, ``exp_avg``,
``exp_avg_sq``; SGD: the momentum buffers), and compares them with the state at the end
of base training.  Before the fix the optimizer state was shared between the arms and
updated in place, so the RFF arm started where the normal arm ended (Adam step counts
13, 26, 39 …).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from rffsurgery.train import GENERATED_SPLITS, Augment, GeneratedSource, ProtocolConfig, run_protocol
from rffsurgery.train.protocols import rff as protocol

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = GeneratedSource(per_class=20, cue=1.0)
SPLIT = GENERATED_SPLITS["g.1"]
CFG = ProtocolConfig(epochs=2, transfer_epochs=2, batch_size=32, device="cpu", control="both")


def _snapshot(model, optimizer) -> dict:
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict())}


def _record(mp: pytest.MonkeyPatch) -> dict:
    """``desc`` ("base shared 2", "branch rff 3", …) → the state before and after that epoch."""
    calls = {}
    real = protocol.train_epoch

    def spy(model, batches, optimizer, runtime, epoch_seed, augment=None, l1=0.0, desc="", **kw):
        before = _snapshot(model, optimizer)
        stats = real(model, batches, optimizer, runtime, epoch_seed, augment, l1, desc, **kw)
        calls[desc.split(" ", 3)[3]] = (before, _snapshot(model, optimizer))
        return stats

    mp.setattr(protocol, "train_epoch", spy)
    return calls


def _same(a, b) -> bool:
    """Recursive equality of state dicts (tensors by value, step counts included)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _run(tmp_path, **changes):
    cfg = dataclasses.replace(CFG, **changes)
    with pytest.MonkeyPatch.context() as mp:
        calls = _record(mp)
        run_protocol(cfg, SOURCE.protocol_data(SPLIT, 0), 0, tmp_path / "run", split="g.1")
    return calls


@pytest.mark.parametrize("optimizer, moments", [("adam", {"step", "exp_avg", "exp_avg_sq"}),
                                                ("sgd", {"momentum_buffer"})])
@pytest.mark.parametrize("until_overfit", [False, True])
def test_every_arm_starts_from_the_saved_optimizer_and_model_state(tmp_path, optimizer, moments, until_overfit):
    changes = {"optimizer": optimizer}
    if until_overfit:  # n is the best epoch, whose state was saved while training went on
        changes.update(until_overfit=True, max_epochs=3, patience=1)
    calls = _run(tmp_path, **changes)
    arms = {k.split()[1]: v[0] for k, v in calls.items() if k.startswith("branch")}
    assert list(arms) == ["normal", "rff", "placebo", "aa"]
    branch_epoch = int(next(k for k in calls if k.startswith("branch")).split()[2])
    saved = calls[f"base shared {branch_epoch - 1}"][1]  # the state at the end of base epoch n
    state = saved["optimizer"]["state"]
    assert state and all(set(s) == moments for s in state.values())
    if optimizer == "adam":
        steps = {float(s["step"]) for s in state.values()}
        assert len(steps) == 1 and steps.pop() > 0
    for name, start in arms.items():
        assert _same(start["model"], saved["model"]), f"arm {name} starts from other weights"
        assert _same(start["optimizer"], saved["optimizer"]), f"arm {name} starts from another optimizer state"


def test_arms_see_the_same_data_and_random_numbers_except_the_aa_arm(tmp_path):
    """The inputs each arm's model actually receives in the branch epoch (a forward pre-hook records every
    batch) and the global seed at its first batch (dropout): equal for normal, RFF and placebo; the A/A arm
    sees the same images in another order."""
    seen: dict[str, list] = {}
    real = protocol.train_epoch

    def spy(model, batches, optimizer, runtime, epoch_seed, augment=None, l1=0.0, desc="", **kw):
        arm = desc.split()[4] if desc.split()[3] == "branch" else None
        if arm is None:
            return real(model, batches, optimizer, runtime, epoch_seed, augment, l1, desc, **kw)
        record = seen.setdefault(arm, [])

        def hook(_module, args):
            if not record:
                record.append(torch.initial_seed())
            record.append(args[0].detach().clone())

        handle = model.register_forward_pre_hook(hook)
        try:
            return real(model, batches, optimizer, runtime, epoch_seed, augment, l1, desc, **kw)
        finally:
            handle.remove()

    cfg = dataclasses.replace(CFG, dropout=0.3, augment=Augment(flip=True))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "train_epoch", spy)
        run_protocol(cfg, SOURCE.protocol_data(SPLIT, 0), 0, tmp_path / "run", split="g.1")
    assert list(seen) == ["normal", "rff", "placebo", "aa"]
    normal = seen["normal"]
    for arm in ("rff", "placebo"):
        assert seen[arm][0] == normal[0] and len(seen[arm]) == len(normal)
        assert all(torch.equal(a, b) for a, b in zip(seen[arm][1:], normal[1:])), arm
    aa = seen["aa"]
    assert aa[0] != normal[0] and not torch.equal(aa[1], normal[1])
    # the same images, augmented and ordered differently: the same count of inputs per epoch
    assert sum(len(x) for x in aa[1:]) == sum(len(x) for x in normal[1:])
