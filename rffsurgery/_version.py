"""The one place the version is written: pyproject.toml reads it (``[tool.setuptools.dynamic]``), the package
re-exports it, and every file the tool writes carries it (:mod:`rffsurgery.formats`)."""

__version__ = "0.1.0"
