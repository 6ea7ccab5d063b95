"""Tracing: a module → a ``torch.fx`` graph whose node names are module paths (``layer1.0.conv2``).

* :mod:`.tracer` — :func:`trace` (leaf modules, shape-aware retracing of models that branch on shapes);
* :mod:`.meta` — running one fx op on the meta device: shapes without memory or compute.

A new way to capture a graph (another front end) goes here, next to :mod:`.tracer`.
"""

from .tracer import Traced, TraceError, trace

__all__ = ["TraceError", "Traced", "trace"]
