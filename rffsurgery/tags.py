"""Tagging policies: which parametric layers are "RF-expanding".

Three policies, selectable by name:

``paper`` (default)
    The RFF paper froze the weight layers that first work at each new, coarser
    resolution *on the main path*, and nothing else.  Precisely:

    1. The **main path** is the longest input→output path of the traced graph,
       counting weight layers (convolutions, transposed convolutions, linear
       layers).  In a residual block it runs through the residual branch (three
       convs) rather than the projection shortcut (one conv); in an Inception
       module through its deepest branch; in a dense block through every layer.
    2. Walking the main path, a **new resolution** starts wherever the effective
       stride S (per axis) becomes larger than every stride seen before.
    3. At each new resolution, the first weight layer on the main path whose
       output is at that resolution is tagged: it either *produces* it (a
       strided conv) or is the first to *consume* it (the conv after a pooling).
    4. The stem — a weight layer reading the image itself — is skipped unless
       ``include_stem``; ``include_shortcuts`` also tags the weight layers off the
       main path that produce or first consume a new resolution (projection
       shortcuts, parallel Inception branches).

    On the paper's base CNN this gives the convs after each max-pool
    (``features.6``, ``features.12``: layers 7 and 13); on torchvision's
    resnet50 ``layer1.0.conv1``, ``layer2.0.conv2``, ``layer3.0.conv2``,
    ``layer4.0.conv2``.  Layers whose output is global (classifier) are never tagged.

``growth``
    Every weight layer with a local RF is scored by how much it enlarges the RF
    over its input (``metric="pixels"``: r_out − r_in, largest axis; ``"ratio"``:
    r_out / r_in) and the ``top_k`` best, or all with score ≥ ``threshold``, are tagged.

``names``
    Explicit node names or glob patterns (``layer*.0.conv2``); module paths work too.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Sequence

from .errors import RffError

if TYPE_CHECKING:
    from .analysis import LayerRF, Plan

__all__ = ["POLICIES", "Tag", "TagError", "tag"]

WEIGHT_RULES = frozenset({"conv", "conv_transpose", "linear"})


class TagError(RffError, ValueError):
    """Bad policy options, or a policy that matches nothing it was asked to."""


@dataclass(frozen=True)
class Tag:
    """One tagged node and why it was tagged."""

    name: str
    reason: str
    score: float | None = None


def is_weight_layer(layer: "LayerRF") -> bool:
    return layer.rule in WEIGHT_RULES and bool(layer.params)


def _resolution(layer: "LayerRF") -> tuple[Fraction, ...] | None:
    if layer.status != "ok" or any(a is None for a in layer.axes):
        return None
    return tuple(a.stride for a in layer.axes)


def _coarser(res: tuple[Fraction, ...], seen: list[tuple[Fraction, ...]]) -> bool:
    """Coarser than every resolution reached so far (larger stride on some axis than each)."""
    return all(any(r > s for r, s in zip(res, old)) for old in seen)


def _fmt(res: tuple[Fraction, ...]) -> str:
    texts = [str(r) for r in res]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def main_path(plan: "Plan") -> list[str]:
    """Names on the longest input→output path, counting weight layers (see the module doc)."""
    import networkx as nx

    graph = nx.DiGraph()
    live = {l.name for l in plan if l.status in ("ok", "global", "unknown", "misaligned")}
    for layer in plan:
        if layer.name not in live:
            continue
        graph.add_node(layer.name)
        weight = 1 if is_weight_layer(layer) else 0
        for src in layer.inputs:
            if src in live:
                graph.add_edge(src, layer.name, weight=weight)
    return nx.dag_longest_path(graph, weight="weight", default_weight=0)


def _fresh(plan: "Plan") -> dict[str, bool]:
    """Nodes with no weight layer between them and the op that produced their resolution."""
    fresh: dict[str, bool] = {}
    for layer in plan:
        res = _resolution(layer)
        if res is None:
            continue
        same = [i for i in layer.inputs if i in fresh and _resolution(plan.layers[i]) == res]
        produced = not same
        fresh[layer.name] = produced or all(fresh[i] and not is_weight_layer(plan.layers[i]) for i in same)
    return fresh


def _paper(plan: "Plan", include_stem: bool = False, include_shortcuts: bool = False) -> list[Tag]:
    image = tuple(Fraction(1) for _ in range(plan.n_axes))
    seen = [image]
    waiting: tuple[Fraction, ...] | None = None  # newest resolution whose first weight layer is still to come
    stem_pending = True
    levels: list[tuple[Fraction, ...]] = []
    tags: list[Tag] = []
    path = main_path(plan)
    for name in path:
        layer = plan.layers[name]
        res = _resolution(layer)
        if res is None:
            continue
        if _coarser(res, seen):
            seen.append(res)
            waiting = res
        if not is_weight_layer(layer):
            continue
        if stem_pending:
            stem_pending = False
            inputs = [_resolution(plan.layers[i]) for i in layer.inputs]
            if all(r == image for r in inputs if r is not None) and not include_stem:
                waiting = None  # the stem reads the image: not tagged unless asked
                continue
        if waiting is not None and res == waiting:
            produced = all(_resolution(plan.layers[i]) != res for i in layer.inputs)
            verb = "produces" if produced else "first consumes"
            tags.append(Tag(name, f"main path: {verb} stride {_fmt(res)}"))
            levels.append(res)
            waiting = None
    if include_shortcuts:
        on_path, tagged = set(path), {t.name for t in tags}
        fresh = _fresh(plan)
        for layer in plan:
            res = _resolution(layer)
            if (layer.name not in on_path and layer.name not in tagged and is_weight_layer(layer)
                    and res in levels and fresh.get(layer.name)):
                tags.append(Tag(layer.name, f"off the main path: first weight layer at stride {_fmt(res)}"))
    order = {name: i for i, name in enumerate(plan.layers)}
    return sorted(tags, key=lambda t: order[t.name])


def _growth(plan: "Plan", metric: str = "pixels", top_k: int | None = 4, threshold: float | None = None) -> list[Tag]:
    if metric not in ("pixels", "ratio"):
        raise TagError(f"growth metric must be 'pixels' or 'ratio', not {metric!r}")
    if threshold is None and (top_k is None or top_k < 1):
        raise TagError("growth needs top_k ≥ 1 or a threshold")
    scored: list[tuple[float, int, str, str]] = []
    for order, layer in enumerate(plan):
        if not is_weight_layer(layer) or layer.status != "ok" or any(a is None for a in layer.axes):
            continue
        before = [plan.layers[i] for i in layer.inputs if plan.layers[i].status == "ok"]
        if not before:
            continue
        r_in = max(max(a.size for a in l.axes if a is not None) for l in before)
        r_out = max(a.size for a in layer.axes)
        score = float(r_out - r_in) if metric == "pixels" else r_out / r_in
        scored.append((score, order, layer.name, f"RF {r_in} -> {r_out}"))
    if threshold is not None:
        chosen = [s for s in scored if s[0] >= threshold]
    else:
        chosen = sorted(scored, key=lambda s: (-s[0], s[1]))[:top_k]
    unit = "px" if metric == "pixels" else "x"
    return [Tag(name, f"growth {score:g}{unit} ({why})", score) for score, _, name, why in sorted(chosen, key=lambda s: s[1])]


def _names(plan: "Plan", patterns: Sequence[str] = ()) -> list[Tag]:
    patterns = [patterns] if isinstance(patterns, str) else patterns  # one pattern, not its characters
    if not patterns:
        raise TagError("the 'names' policy needs at least one node name or glob pattern")
    aliases = plan.traced.module_outputs
    chosen: dict[str, str] = {}
    for pattern in patterns:
        hits = [l.name for l in plan if fnmatch.fnmatchcase(l.name, pattern) and l.params]
        hits += [aliases[a] for a in aliases if fnmatch.fnmatchcase(a, pattern) and plan.layers[aliases[a]].params]
        if not hits:
            raise TagError(f"pattern {pattern!r} matches no node with parameters in {plan.model_name}")
        for h in hits:
            chosen.setdefault(h, f"selected by {pattern!r}")
    return [Tag(l.name, chosen[l.name]) for l in plan if l.name in chosen]


POLICIES = {"paper": _paper, "growth": _growth, "names": _names}


def tag(analysis: "Plan", policy: str = "paper", **options: Any) -> list[Tag]:
    """Tag the RF-expanding nodes of ``analysis`` under ``policy`` (see the module docstring).

    Memoised on the analysis per policy and options, so a table, a plot and an
    exported freeze plan made from one analysis tag it once.
    """
    try:
        fn = POLICIES[policy]
    except KeyError:
        raise TagError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}") from None
    key = "tags:" + json.dumps([policy, options], sort_keys=True, default=repr)
    if key not in analysis.memo:
        try:
            analysis.memo[key] = fn(analysis, **options)
        except TypeError as exc:
            raise TagError(f"bad options for policy {policy!r}: {exc}") from None
    return list(analysis.memo[key])
