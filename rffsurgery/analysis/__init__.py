"""Analysis: a traced model → RF, stride and padding of every node (a :class:`Plan`), its MACs, its ERF.

* :mod:`.analyzer` — :func:`analyze`: trace, propagate the geometry rules, collect the result;
* :mod:`.result` — :class:`LayerRF` and :class:`Plan`, plain data every later stage reads;
* :mod:`.fallback` — what to say (and when to run on CPU) if the shape pass fails;
* :mod:`.macs` — parameters and multiply-accumulates per node;
* :mod:`.erf` — effective receptive fields: input gradients, aggregated (drawing is in :mod:`rffsurgery.reports`).
"""

from .analyzer import UnknownOpError, analyze, declared_input_size, parse_input_size
from .result import GLOBAL, DimLayout, LayerRF, Plan, check_unit, describe_unit, find_layer, select_unit

__all__ = ["GLOBAL", "DimLayout", "LayerRF", "Plan", "UnknownOpError", "analyze", "check_unit",
           "declared_input_size", "describe_unit", "find_layer", "parse_input_size", "select_unit"]
