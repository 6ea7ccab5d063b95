"""Experiments built on the epoch loop: the RFF protocol and paper 002's rewrite experiment.

* :mod:`.rff` — one (split, seed) run: base → branch (normal / RFF / placebo) → transfer;
* :mod:`.experiment` — several splits × seeds, resumable, then the report;
* :mod:`.aggregate` and :mod:`.stats` — paired statistics over runs;
* :mod:`.rewrite` — the original model against its rewrites (paper 002).

A new protocol: a module here with a config dataclass and a ``run_…`` function, and a
``--protocol`` choice in :mod:`rffsurgery.cli.train`.
"""
