"""The analysed graph in a standard format other tools open: GraphML or node-link JSON (``analyze --graph``).

One node per graph node, named as in the table (``layer1.0.conv2``), with the analysis as
attributes: ``op``, ``kind``, ``shape``, ``status``, ``rf``, ``rf_min``, ``stride``,
``padding`` (per spatial axis), ``global_context``, ``params``, ``macs``, ``tagged`` and
``tag_reason``; an edge from each input to its consumer.  Node-link JSON keeps the per-axis
values as lists (``"global"`` for an axis a node reads whole, exact fractions as ``"1/2"``);
GraphML, whose attributes are scalars, writes them as comma-separated text (``"427,427"``)
and every other attribute in its own type, so ``networkx.read_graphml`` gives back ints,
bools and strings.  The graph itself carries the model, the input size and the version tag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import networkx as nx

from ..analysis.macs import node_costs
from ..analysis.result import LayerRF, Plan
from ..errors import InvalidArgument
from ..files import atomic_output, prepare_output
from ..formats import stamp
from ..tags import Tag

__all__ = ["FORMATS", "to_networkx", "write_graph"]

FORMATS = {".graphml": "GraphML", ".json": "node-link JSON"}


def _number(x: Any) -> Any:
    """An int, ``"global"``, ``"1/2"`` or ``None``: the JSON form of one per-axis value."""
    if x is None or isinstance(x, (int, str)):
        return x
    return int(x) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _attributes(layer: LayerRF, tags: dict[str, str], params: int, macs: int | None) -> dict[str, Any]:
    geometry = layer.status in ("ok", "global")
    return {
        "op": layer.op, "kind": layer.kind,
        "shape": list(layer.shape) if layer.shape is not None else [],
        "status": layer.status,
        "rf": [_number(v) for v in layer.rf] if geometry else [],
        "rf_min": [_number(v) for v in layer.rf_min] if geometry else [],
        "stride": [_number(v) for v in layer.stride] if layer.status == "ok" else [],
        "padding": [_number(v) for v in layer.padding] if layer.status == "ok" else [],
        "global_context": layer.global_context,
        "params": params, "macs": macs if macs is not None else -1,
        "tagged": layer.name in tags, "tag_reason": tags.get(layer.name, ""),
        "reason": layer.reason,
    }


def to_networkx(plan: Plan, tags: Sequence[Tag] = ()) -> nx.DiGraph:
    """The analysed graph as a :class:`networkx.DiGraph` with JSON-native attributes (see the module docstring).

    ``macs`` is ``-1`` where the MACs could not be counted (a model that reads tensor values).
    """
    costs = node_costs(plan)
    tagged = {t.name: t.reason for t in tags}
    graph = nx.DiGraph(model=plan.model_name, input_size=list(plan.input_size), complete=plan.complete,
                       **stamp("analysis-graph", 1))
    for layer in plan:
        graph.add_node(layer.name, **_attributes(layer, tagged, costs.params.get(layer.name, 0),
                                                 costs.macs.get(layer.name) if costs.total_macs is not None else None))
    for layer in plan:
        graph.add_edges_from((source, layer.name) for source in layer.inputs)
    return graph


def _flat(value: Any) -> Any:
    """GraphML attributes are scalars: lists become comma-separated text, dicts JSON."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def write_graph(plan: Plan, path: str | Path, tags: Sequence[Tag] = (), *, force: bool = False,
                reading: Sequence[str | Path] = ()) -> Path:
    """Write the analysed graph to ``path``: GraphML for ``.graphml``, node-link JSON for ``.json``."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InvalidArgument(f"--graph {path}: the file type comes from its name; use "
                              + " or ".join(f"{ext} ({name})" for ext, name in FORMATS.items()))
    prepare_output(path, force=force, option="--graph", reading=reading)
    graph = to_networkx(plan, tags)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps(nx.node_link_data(graph, edges="edges"), indent=1) + "\n", encoding="utf-8")
        else:
            flat = nx.DiGraph(**{k: _flat(v) for k, v in graph.graph.items()})
            flat.add_nodes_from((n, {k: _flat(v) for k, v in a.items()}) for n, a in graph.nodes(data=True))
            flat.add_edges_from(graph.edges)
            nx.write_graphml(flat, tmp)
    return path
