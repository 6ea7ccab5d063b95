"""The layer-matched placebo of a freeze plan: as many layers, about as many parameters, none of them RF-expanding.

A freeze plan freezes the RF-expanding layers for an epoch.  Whether *those* layers
matter, or freezing *any* layers for an epoch does the same, is answered by a placebo
that freezes other layers of the same count and (as nearly as possible) the same
number of parameters.  "Other" — *away from the tagged layers* — means a weight layer
(convolution, transposed convolution, linear) that

1. is not in the plan's frozen set;
2. has a local output (an effective stride on every axis): the conv feature extractor,
   not the fully connected layers after flatten or global pooling, whose output the
   transfer step reads (and the classifier head, which it replaces);
3. is not RF-expanding under any setting of the ``paper`` policy: neither tagged by it
   with ``include_stem`` and ``include_shortcuts`` (so no layer that produces or first
   consumes a new resolution, on or off the main path).

Among those *candidates*, the placebo is the set of exactly as many layers as the plan
tags whose parameter count is closest to the tagged layers' count on a log scale
(``|log(placebo / tagged)|``); ties go to the set that comes first in graph order, so
the choice is deterministic.  Every set is tried when there are at most
:data:`EXHAUSTIVE_LIMIT` of them; beyond that a deterministic local search (best
single-layer swaps from the greedy start) is used.  The placebo plan treats BatchNorm
as the plan does (``bn_mode``) and has the plan's schedule.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..analysis.result import Plan
from ..tags import is_weight_layer, tag
from ..tags.common import resolution
from .document import FreezePlan, PlanError, build_freeze_plan

__all__ = ["EXHAUSTIVE_LIMIT", "Placebo", "closest_subset", "placebo_candidates", "placebo_plan"]

EXHAUSTIVE_LIMIT = 200_000
"""Most layer sets tried one by one; more candidates than that use the local search."""


@dataclass(frozen=True)
class Placebo:
    """The placebo's plan and how well it matches the plan it controls for."""

    plan: FreezePlan
    layers: tuple[str, ...]
    parameters: int  # weights of the placebo's layers (BatchNorm not counted, as for ``tagged_parameters``)
    tagged_layers: tuple[str, ...]
    tagged_parameters: int
    candidates: tuple[str, ...]

    @property
    def ratio(self) -> float:
        """Placebo parameters / tagged parameters (1.0 is a perfect match)."""
        return self.parameters / self.tagged_parameters

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "parameters": self.parameters, "tagged_layers": list(self.tagged_layers),
                "tagged_parameters": self.tagged_parameters, "ratio": self.ratio, "candidates": list(self.candidates)}


def _count(analysis: Plan, name: str) -> int:
    params = dict(analysis.model.named_parameters())
    return sum(params[p].numel() for p in analysis.layers[name].params)


def placebo_candidates(analysis: Plan, frozen: Sequence[str]) -> list[str]:
    """The weight layers away from the tagged ones (see the module docstring), in graph order."""
    expanding = {t.name for t in tag(analysis, "paper", include_stem=True, include_shortcuts=True)}
    excluded = expanding | set(frozen)
    return [layer.name for layer in analysis
            if is_weight_layer(layer) and resolution(layer) is not None and layer.name not in excluded]


def closest_subset(counts: Sequence[int], k: int, target: int,
                   limit: int = EXHAUSTIVE_LIMIT) -> tuple[int, ...]:
    """Indices of ``k`` of ``counts`` whose sum is closest to ``target`` on a log scale (ties: first in order)."""
    if not 1 <= k <= len(counts) or target <= 0 or min(counts, default=1) <= 0:
        raise ValueError(f"need 1 ≤ k ≤ {len(counts)} positive counts and a positive target, got k={k}, {target}")

    def cost(chosen: Sequence[int]) -> float:
        return abs(math.log(sum(counts[i] for i in chosen) / target))

    if math.comb(len(counts), k) <= limit:
        return min(itertools.combinations(range(len(counts)), k), key=cost)  # min keeps the first of equals
    chosen = sorted(sorted(range(len(counts)), key=lambda i: abs(counts[i] - target / k))[:k])
    while True:  # best improving swap of one chosen index for one left out, until none improves
        best, swap = cost(chosen), None
        for out_pos, inside in itertools.product(range(k), [i for i in range(len(counts)) if i not in chosen]):
            trial = sorted(chosen[:out_pos] + chosen[out_pos + 1:] + [inside])
            if cost(trial) < best - 1e-12:
                best, swap = cost(trial), trial
        if swap is None:
            return tuple(chosen)
        chosen = swap


def placebo_plan(analysis: Plan, plan: FreezePlan) -> Placebo:
    """The layer-matched placebo of ``plan`` on the model of ``analysis`` (see the module docstring)."""
    tagged = tuple(t["node"] for t in plan.tagged)
    target = sum(_count(analysis, name) for name in tagged)
    candidates = placebo_candidates(analysis, plan.frozen_nodes)
    if len(candidates) < len(tagged):
        raise PlanError(f"no layer-matched placebo for {analysis.model_name}: the plan freezes {len(tagged)} "
                        f"layer(s) but only {len(candidates)} weight layer(s) are away from them "
                        f"({', '.join(candidates) or 'none'}); use --control aa")
    counts = [_count(analysis, name) for name in candidates]
    layers = tuple(candidates[i] for i in closest_subset(counts, len(tagged), target))
    placebo = build_freeze_plan(analysis, policy="names", schedule=plan.schedule, bn=plan.bn_mode,
                                patterns=list(layers))
    return Placebo(placebo, layers, sum(_count(analysis, name) for name in layers), tagged, target,
                   tuple(candidates))
