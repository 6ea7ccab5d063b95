"""``python -m rffsurgery`` (and ``torchrun -m rffsurgery``) runs the command line."""

from .cli import main

main(prog_name="rffsurgery")
