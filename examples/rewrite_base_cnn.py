"""Rewrite the RFF paper's base CNN to save parameters, train it, save it, load it back, export it.

    python examples/rewrite_base_cnn.py

1. FC head → 4-way grouped FC + Meta, and every conv but the stem → channel-sliding
   Conv3d with 8 filters (what `rffsurgery rewrite rff-base-cnn --meta-groups 4
   --conv3d-filters 8` does),
2. print parameters/MACs before → after and the checks (trace, forward/backward, RF),
3. train a few steps of an ordinary loop on generated data,
4. save recipe.json + state_dict.pt, rebuild from them (weights_only load) and
   compare outputs; export to ONNX and compare with onnxruntime.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from rffsurgery.export import export_onnx
from rffsurgery.models import RFFBaseCNN
from rffsurgery.surgery import load, rewrite, save
from rffsurgery.reports.rewrite import format_report
from rffsurgery.surgery.check import check


def main() -> None:
    torch.manual_seed(0)
    done = rewrite(RFFBaseCNN(num_classes=8), meta_groups=4, conv3d_filters=8)
    print(format_report(done, check(done)))

    model = done.after.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.randn(64, 3, 32, 32), torch.randint(0, 8, (64,))
    for step in range(5):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        print(f"step {step}: loss {loss.item():.4f}")

    out = Path(tempfile.mkdtemp())
    save(done, out)
    # The recipe names no zoo model (we built RFFBaseCNN ourselves), so pass the base architecture.
    loaded = load(out, base=RFFBaseCNN(num_classes=8)).eval()
    model.eval()
    with torch.no_grad():
        same = torch.equal(loaded(images), model(images))
    print(f"reloaded from {out}: outputs identical: {same}")
    print(export_onnx(model, done.input_size, out / "base_cnn.onnx"))


if __name__ == "__main__":
    main()
