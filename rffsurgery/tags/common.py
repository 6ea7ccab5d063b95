"""What the tagging policies share: the records, weight layers, resolutions and the main path."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import networkx as nx

from ..analysis.result import LayerRF, Plan
from ..errors import RffError

__all__ = ["Tag", "TagError", "WEIGHT_RULES", "coarser", "fmt_resolution", "is_weight_layer", "main_path", "resolution"]

WEIGHT_RULES = frozenset({"conv", "conv_transpose", "linear"})


class TagError(RffError, ValueError):
    """Bad policy options, or a policy that matches nothing it was asked to."""


@dataclass(frozen=True)
class Tag:
    """One tagged node and why it was tagged."""

    name: str
    reason: str
    score: float | None = None


def is_weight_layer(layer: LayerRF) -> bool:
    return layer.rule in WEIGHT_RULES and bool(layer.params)


def resolution(layer: LayerRF) -> tuple[Fraction, ...] | None:
    if layer.status != "ok" or any(a is None for a in layer.axes):
        return None
    return tuple(a.stride for a in layer.axes)


def coarser(res: tuple[Fraction, ...], seen: list[tuple[Fraction, ...]]) -> bool:
    """Coarser than every resolution reached so far (larger stride on some axis than each)."""
    return all(any(r > s for r, s in zip(res, old)) for old in seen)


def fmt_resolution(res: tuple[Fraction, ...]) -> str:
    texts = [str(r) for r in res]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def main_path(plan: Plan) -> list[str]:
    """Names on the longest input→output path, counting weight layers (the paper policy's step 1).

    networkx gives the longest path of the DAG; the same graph library writes the
    analysed graph for other tools (``analyze --graph``).
    """
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
