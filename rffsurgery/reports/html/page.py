"""One self-contained HTML file: the page's template, style and script inlined around the report's JSON.

Everything the page needs is in the file: no server, no CDN, no font or image to
fetch, and a Content-Security-Policy that forbids every request, so it works from
``file://`` offline and cannot leak anything.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ...analysis.result import Plan
from ...errors import InvalidArgument
from ...files import prepare_output, write_text
from ...tags import Tag, tag
from .payload import report_data

if TYPE_CHECKING:
    from ...analysis.erf import ErfResult
    from ...plan import FreezePlan

__all__ = ["html_report", "render"]

_ASSETS = ("template.html", "report.css", "report.js")
_KEY = re.compile(r"\{\{(title|style|data|script)\}\}")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` written as escapes (valid JSON still)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: dict[str, Any]) -> str:
    """The page for a :func:`~.payload.report_data` payload."""
    template, style, script = (_asset(name) for name in _ASSETS)
    analysis = data["analysis"]
    title = f"{analysis['model']} {'x'.join(map(str, analysis['input_size']))}: receptive fields"
    parts = {"title": html.escape(title), "style": style, "data": _script_json(data), "script": script}
    # one pass over the template: what is put in (names from the user's model) is never searched for keys
    return _KEY.sub(lambda m: parts[m.group(1)], template)


def html_report(analysis: Plan, path: str | Path, *, image: str | Path | None = None, erf: "ErfResult | None" = None,
                freeze_plan: "FreezePlan | None" = None, tags: Sequence[Tag] | None = None,
                force: bool = False) -> Path:
    """Write the interactive report of ``analysis`` to ``path``: one HTML file that opens offline.

    ``image``: drawn under the layers' output grids, resized and centre-cropped as the
    model sees it (default: a neutral grid).  ``erf``: an :func:`rffsurgery.erf.erf`
    result of the same model and input size, shown beside the theoretical RF.
    ``freeze_plan``: its schedule and fingerprint.  ``tags``: the layers marked in the
    table and the chart (default: the freeze plan's tagged layers, else the paper policy).
    An existing file is replaced only with ``force``.
    """
    path = prepare_output(path, force=force, option="the report", reading=[image] if image is not None else ())
    pixels = None
    if image is not None:
        if analysis.n_axes != 2:
            raise InvalidArgument(f"--image needs an image model (2 spatial axes); {analysis.model_name} has "
                                  f"{analysis.n_axes}: leave out --image")
        from ...data.images import read_image  # the data room loads every dataset reader: only for an image

        pixels = read_image(image, analysis.input_size[1:])
    if erf is not None and tuple(erf.input_size) != tuple(analysis.input_size):
        raise InvalidArgument(f"the ERF was measured at {'x'.join(map(str, erf.input_size))}, the analysis is of "
                              f"{'x'.join(map(str, analysis.input_size))}: compute both at one input size")
    if freeze_plan is not None:
        missing = [n for n in freeze_plan.frozen_nodes if n not in analysis.layers]
        if missing:
            raise InvalidArgument(f"the freeze plan for {freeze_plan.model_name} freezes node(s) "
                                  f"{', '.join(missing[:5])} that {analysis.model_name} does not have: "
                                  "give the plan made for this model")
        if tags is None:
            tags = [Tag(t["node"], t.get("reason", "")) for t in freeze_plan.tagged]
    data = report_data(analysis, pixels=pixels, image_name=Path(image).name if image is not None else None, erf=erf,
                       freeze_plan=freeze_plan, tags=tag(analysis) if tags is None else tags)
    return write_text(path, render(data))
