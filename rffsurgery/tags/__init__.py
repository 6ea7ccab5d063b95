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

import json
from typing import Any, Callable

from ..analysis.result import Plan, require_plan
from .common import Tag, TagError, is_weight_layer, main_path
from .growth import growth
from .names import names
from .paper import paper

__all__ = ["POLICIES", "Tag", "TagError", "is_weight_layer", "main_path", "tag"]

POLICIES: dict[str, Callable[..., list[Tag]]] = {"paper": paper, "growth": growth, "names": names}
"""The registry: a new policy is a module here with one function ``(plan, **options) → list[Tag]`` and one entry."""


def tag(analysis: Plan, policy: str = "paper", **options: Any) -> list[Tag]:
    """Tag the RF-expanding nodes of ``analysis`` under ``policy`` (see the module docstring).

    Memoised on the analysis per policy and options, so a table, a plot and an
    exported freeze plan made from one analysis tag it once.
    """
    require_plan(analysis, "tag()", TagError)
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
