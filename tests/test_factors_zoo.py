"""Window, grid and token layouts of real architectures, engine against the gradient, a few nodes per stage.

The default run checks small configurations of the zoo's families (DaViT, Hiera,
Twins, NesT, SAM's ViT, MaxViT); ``-m slow`` checks the zoo's own models (davit,
hiera, twins, maxvit, coatnet, nest, samvit, efficientvit, swin from timm and
torchvision) at small inputs.  Each checked node is compared unit by unit
(tests/gradient_rf.py: the elements the engine names for a unit, their input
gradient's bounding box against the engine's interval clipped to the input); a node
with global context also has to read the whole input, and exactly its interval
once the engine's global summaries are detached.  Before factors were tracked,
these models were global from their first window partition on.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import pytest
import timm
import torch
from torch import nn
from torchvision.models import swin_t

from rffsurgery import Plan, analyze

from gradient_rf import Case, GradientProbe, compare_layout, default_units, diagonal_units

pytestmark = pytest.mark.usefixtures("one_thread")


def _units(grid: Sequence[int]) -> list[tuple[int, ...]]:
    return list(dict.fromkeys(diagonal_units(grid) + default_units(grid)))


def _clipped(case: Case) -> tuple:
    return tuple((0, n - 1) if e is None else (max(e[0], 0), min(e[1], n - 1)) for e, n in zip(case.engine, case.extent))


def check_nodes(model: nn.Module, size: tuple[int, ...], names: Callable[[Plan], list[str]], rel: float = 0.0,
                units: Callable[[Sequence[int]], list] = _units) -> Plan:
    """The picked nodes, unit by unit: exact where the unit reads no padding, and within the engine's interval
    at the border (``Case``, ``"bound"``: a window's padded tokens read nothing at all)."""
    torch.manual_seed(0)
    model.eval()
    plan = analyze(model, size)
    assert plan.complete and not [l.name for l in plan if l.bounded], [l.name for l in plan if l.bounded][:5]
    picked = names(plan)
    assert picked
    cases = compare_layout(plan, GradientProbe(model, size), picked, units=units, rel=rel, border="bound")
    wrong = [str(c) for c in cases if not c.ok]
    assert not wrong, f"{len(wrong)}/{len(cases)} units differ:\n" + "\n".join(wrong[:20])
    return plan


def local(plan: Plan, prefix: str, per_stage: int = 2, key: int = 1) -> list[str]:
    """``per_stage`` main layers of each stage (``prefix``.<stage>…) that still have a local RF, spread out."""
    stages: dict[str, list[str]] = {}
    for l in plan.main_layers():
        if l.name.startswith(prefix) and l.is_local:
            stages.setdefault(l.name.split(".")[key], []).append(l.name)
    return [n for names in stages.values() for n in dict.fromkeys(names[i * (len(names) - 1) // max(per_stage - 1, 1)]
                                                                   for i in range(per_stage))]


# -- the issue's examples: analysed on the meta device, no gradient -----------------------------
@pytest.mark.parametrize("name, node, window", [
    ("timm:davit_tiny", "stages.0.blocks.0.0.attn.proj", 7),  # was global from attn.qkv
    ("timm:hiera_tiny_224", "blocks.1.attn.proj", 4),  # was global from patch_embed's transpose
    ("timm:twins_svt_small", "blocks.0.0.mlp.fc1", 7),  # was global (locally-grouped attention)
    ("timm:maxvit_tiny_tf_224", "stages.0.blocks.0.attn_block.mlp.fc1", 7),  # was global from the block attention
])
def test_issue_examples_are_windowed_and_local(name: str, node: str, window: int) -> None:
    plan = analyze(name)
    layer = plan[node]
    assert layer.is_local and layer.windowed == (window, window) and not layer.bounded, (layer.status, layer.rf)
    assert plan.complete and not any(l.bounded for l in plan)


# -- small configurations (the default run) ------------------------------------------------
def test_davit_windows_and_channel_attention() -> None:
    """Windows of 4 on an 8×8 map; the channel attention block reads the whole image as context."""
    model = timm.create_model("davit_tiny", embed_dims=(16, 32, 32, 32), num_heads=(1, 1, 1, 1), depths=(1, 1, 1, 1),
                              window_size=4, num_classes=2)
    plan = check_nodes(model, (3, 32, 32), lambda p: ["stages.0.blocks.0.0", "stages.0.blocks.0.1",
                                                       "stages.1.blocks.0.0"])
    assert plan["stages.0.blocks.0.0.attn.qkv"].rf == (15, 15)  # stem and conv position encoding, before attention
    assert plan["stages.0.blocks.0.0"].windowed == (4, 4) and not plan["stages.0.blocks.0.0"].global_context
    assert plan["stages.0.blocks.0.1"].global_context  # channel attention: a global summary


def test_hiera_mask_units() -> None:
    model = timm.create_model("hiera_tiny_224", img_size=64, embed_dim=16, num_heads=1, stages=(1, 1, 1, 1),
                              num_classes=2)
    plan = check_nodes(model, (3, 64, 64), lambda p: ["blocks.0", "blocks.1", "blocks.2"])
    assert plan["blocks.0"].windowed == (8, 8) and plan["blocks.1"].windowed == (4, 4)


def test_twins_locally_grouped_then_global_attention() -> None:
    model = timm.create_model("twins_svt_small", img_size=32, embed_dims=[16, 32, 32, 32], num_heads=[1, 1, 1, 1],
                              depths=[2, 1, 1, 1], wss=[4, 4, 4, 4], mlp_ratios=[2, 2, 2, 2], sr_ratios=[2, 1, 1, 1],
                              num_classes=2)
    plan = check_nodes(model, (3, 32, 32), lambda p: ["blocks.0.0", "pos_block.0", "blocks.0.1"])
    assert plan["blocks.0.0"].windowed == (4, 4)
    assert plan["blocks.0.1"].status == "global"  # sub-sampled attention over the whole map


def test_nest_blocks() -> None:
    from timm.models.nest import Nest

    model = Nest(img_size=32, embed_dims=(16, 16, 16), num_heads=(1, 1, 1), depths=(1, 1, 1), num_classes=2)
    plan = check_nodes(model, (3, 32, 32), lambda p: ["levels.0", "levels.1", "levels.2"])
    assert plan["levels.0.transformer_encoder"].windowed == (2, 2)


def test_sam_vit_windows_then_global() -> None:
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    model = VisionTransformerSAM(img_size=48, patch_size=4, embed_dim=16, depth=2, num_heads=1, window_size=5,
                                 global_attn_indexes=(1,), use_rel_pos=True, num_classes=2)
    plan = check_nodes(model, (3, 48, 48), lambda p: ["blocks.0", "blocks.1"])
    assert plan["blocks.0"].windowed == (5, 5)  # 12×12 tokens padded to windows of 5
    assert plan["blocks.1"].status == "global"


def test_maxvit_block_then_grid() -> None:
    from timm.models.maxxvit import MaxxVit, MaxxVitTransformerCfg, model_cfgs

    cfg = dataclasses.replace(model_cfgs["maxvit_tiny_tf"], embed_dim=(16, 32), depths=(1, 1), stem_width=8,
                              head_hidden_size=None,
                              transformer_cfg=MaxxVitTransformerCfg(dim_head=8, window_size=(4, 4), grid_size=(4, 4)))
    model = MaxxVit(cfg, img_size=64, num_classes=2)
    plan = check_nodes(model, (3, 64, 64), lambda p: ["stages.0.blocks.0.attn_block", "stages.0.blocks.0.attn_grid",
                                                       "stages.1.blocks.0.attn_block"])
    assert plan["stages.0.blocks.0.attn_block"].windowed == (4, 4)


# -- the zoo's own models (-m slow) --------------------------------------------------------
SWIN_MASK = 1e-30  # Swin's masks add -100, not -inf: e^-100 still reaches a float64 gradient (tests/test_windows.py)

ZOO = {
    "davit": (lambda: timm.create_model("davit_tiny"), 64, lambda p: local(p, "stages.")),
    "hiera": (lambda: timm.create_model("hiera_tiny_224", img_size=64), 64, lambda p: local(p, "blocks.", 4, 0)),
    "twins": (lambda: timm.create_model("twins_svt_small", img_size=64), 64, lambda p: local(p, "blocks.")),
    "maxvit": (lambda: timm.create_model("maxvit_tiny_tf_224", img_size=64), 64, lambda p: local(p, "stages.")),
    "coatnet": (lambda: timm.create_model("coatnet_0_rw_224", img_size=64), 64, lambda p: local(p, "stages.")),
    "nest": (lambda: timm.create_model("nest_tiny", img_size=64), 64, lambda p: local(p, "levels.")),
    "samvit": (lambda: timm.create_model("samvit_base_patch16", img_size=256, depth=3, global_attn_indexes=(2,)),
               256, lambda p: local(p, "blocks.", 3, 0)),
    "efficientvit": (lambda: timm.create_model("efficientvit_b0"), 64, lambda p: local(p, "stages.")),
    "efficientvit_m": (lambda: timm.create_model("efficientvit_m0", img_size=160), 160, lambda p: local(p, "stages.")),
    "swin_timm": (lambda: timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4), 64,
                  lambda p: local(p, "layers.")),
    "swin_torchvision": (lambda: swin_t(), 64, lambda p: local(p, "features.", 2, 1)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_a_few_nodes_per_stage(name: str) -> None:
    build, side, pick = ZOO[name]
    rel = SWIN_MASK if name.startswith("swin") else 0.0
    check_nodes(build(), (3, side, side), pick, rel=rel, units=lambda grid: default_units(grid))
