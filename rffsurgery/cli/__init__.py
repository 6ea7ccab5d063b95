"""The ``rffsurgery`` command line: a thin layer over the Python API, one module per command.

:mod:`.common` holds the error path and option helpers every command shares;
:mod:`.analyze`, :mod:`.erf`, :mod:`.plan`, :mod:`.report`, :mod:`.rewrite` and :mod:`.train` (with
:mod:`.train_rewrite`) each define one command.  A new command: a module here and one
entry in the tuple at the end of this file.
"""

from __future__ import annotations

import click

from .._version import __version__
from .analyze import analyze_command
from .common import DEBUG_ENV, Group
from .erf import erf_command
from .plan import plan_group
from .report import report_command
from .rewrite import rewrite_command
from .train import train_command

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rffsurgery")
@click.option("--debug", is_flag=True, help=f"Show the full traceback of any error (or set {DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """Graph-level surgery on PyTorch models: exact receptive fields, freeze plans, rewrites."""


for command in (analyze_command, erf_command, plan_group, report_command, rewrite_command, train_command):
    main.add_command(command)
