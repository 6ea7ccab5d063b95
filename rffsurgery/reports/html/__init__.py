"""The interactive HTML report (``rffsurgery report``): one self-contained file that opens offline.

* :mod:`.payload` — the data it carries: the analysis JSON (every node's ``grid`` and
  ``maps``), the image, ERF heat maps and the freeze plan's schedule;
* :mod:`.page` — :func:`html_report`, which inlines the template, style and script
  (``template.html``, ``report.css``, ``report.js``) around that data.

The page draws; it computes intervals only from the JSON's maps, as
:meth:`~rffsurgery.analysis.LayerRF.interval` does, so windowed and upsampled layers
need nothing special.
"""

from .page import html_report, render
from .payload import report_data

__all__ = ["html_report", "render", "report_data"]
