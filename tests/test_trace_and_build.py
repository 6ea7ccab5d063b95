"""Tracing and meta construction shortcuts give what torch.fx and a CPU build give."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from rffsurgery.trace import trace
from rffsurgery.models.zoo import resolve


class Shared(nn.Module):
    """Parameters and buffers read in forward, one parameter shared by two modules."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.scale = nn.Parameter(torch.ones(4))
        self.register_buffer("shift", torch.zeros(4))
        self.plain = torch.ones(4)  # neither parameter nor buffer: a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.a.weight + x @ self.b.weight.t()
        return y * self.scale + self.shift + self.plain


def _reads(graph: fx.Graph) -> list[str]:
    return [str(n.target) for n in graph.nodes if n.op == "get_attr"]


def test_attribute_reads_are_named_as_torch_fx_names_them() -> None:
    model = Shared()
    ours, theirs = trace(model).graph, fx.symbolic_trace(model).graph
    assert _reads(ours) == _reads(theirs)
    assert "a.weight" in _reads(ours) and "b.weight" not in _reads(ours)  # the shared tensor's first name


# regnet computes its widths with torch.arange(...).tolist(): built with CPU computations, meta tensors
@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "timm:convnext_atto", "resnet18",
                                  "torchvision:regnet_x_400mf"])
def test_meta_build_skips_initialisation_but_not_shapes(name: str) -> None:
    spec = resolve(name)
    meta, cpu = spec.build("meta"), spec.build("cpu")
    want = {k: (tuple(v.shape), v.dtype) for k, v in cpu.state_dict().items()}
    got = {k: (tuple(v.shape), v.dtype) for k, v in meta.state_dict().items()}
    assert got == want and all(v.is_meta for v in meta.state_dict().values())
    probe = torch.empty(3, device="meta")
    assert probe.uniform_() is probe and torch.overrides._get_current_function_mode_stack() == []
    assert nn.Module.register_parameter.__module__ == "torch.nn.modules.module"  # put back
