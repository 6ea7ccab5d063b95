"""Rendering only: tables, CSV/JSON, plots, overlays and the rewrite/training reports.

Nothing here computes an analysis or trains; every function takes results (a
:class:`~rffsurgery.analysis.Plan`, an ERF result, a report dict) and draws or
formats them.  matplotlib is imported on use (``pip install rffsurgery[plot]``).

* :mod:`.table` — the ``analyze`` table, CSV and JSON;
* :mod:`.plot` — RF per layer, ERF heat maps and growth;
* :mod:`.overlay` — a unit's RF (and ERF) on the user's image;
* :mod:`.training` — the RFF protocol's report table, JSON and plots;
* :mod:`.rewrite` — the rewrite report and the rewrite experiment's plots.

A new plot or report format: a module here, called from the CLI command that offers it.
"""
