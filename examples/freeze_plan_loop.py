"""Use a freeze plan from a plain PyTorch training loop.

    python examples/freeze_plan_loop.py

1. analyse the model and tag its RF-expanding layers (the paper's policy),
2. export the plan as JSON (what `rffsurgery analyze MODEL --export-plan` writes),
3. load it back (validated) and let a FreezeSchedule freeze those layers in the
   scheduled epochs of an ordinary loop.

The plan is made for the 8-class base CNN and applied to a 10-class one held inside
a wrapper module: the fingerprint covers the layers up to the frozen ones, not the
head, and the schedule finds the planned network inside the wrapper.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from rffsurgery import analyze, build_freeze_plan
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import FreezePlan, FreezeSchedule, Schedule


class Classifier(nn.Module):
    """Training code often holds the network as an attribute (as a LightningModule does)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = RFFBaseCNN(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    torch.manual_seed(0)
    plan_path = Path(tempfile.mkdtemp()) / "plan.json"
    # RFF: train normally, and freeze the tagged layers in epoch 3 only.
    build_freeze_plan(analyze(RFFBaseCNN(num_classes=8)), schedule=Schedule(epochs=(3,))).export(plan_path)
    plan = FreezePlan.load(plan_path)
    print(plan.describe())
    model = Classifier(num_classes=10)

    data = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))) for _ in range(4)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = FreezeSchedule(model, plan)  # refuses a model the plan was not made for
    print(f"planned network found at model.{schedule.target_path}")
    watched = schedule.target.get_parameter(plan.parameter_names[0])
    for epoch in range(1, 5):
        before = watched.detach().clone()
        model.train()
        with schedule.epoch(epoch):
            for x, y in data:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
        moved = not torch.equal(before, watched)
        print(f"epoch {epoch}: frozen={schedule.is_frozen(epoch)}  {plan.parameter_names[0]} moved={moved}")


if __name__ == "__main__":
    main()
