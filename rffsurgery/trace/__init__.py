"""Capturing graphs: a module or an ONNX file → a ``torch.fx`` graph whose node names are module paths.

* :mod:`.capture` — :func:`capture`, the one entry point: fx, torch.export or an ONNX file's graph;
* :mod:`.tracer` — :func:`trace` (leaf modules, shape-aware retracing of models that branch on shapes);
* :mod:`.torch_export` — models whose Python branches on tensor values, captured by ``torch.export``;
* :mod:`.onnx` and :mod:`.onnx_ops` — ONNX files converted to torch calls the rules know (imported on use);
* :mod:`.meta` — running one fx op on the meta device: shapes without memory or compute.

A new way to capture a graph (another front end) goes here, next to :mod:`.tracer`.
"""

from .tracer import Traced, TraceError, trace

__all__ = ["TraceError", "Traced", "trace"]
