"""One version tag for every file rffsurgery writes: plans, recipes, checkpoints, analysis/ERF/report JSON.

Every document starts with the same three fields::

    {"schema": "rffsurgery.freeze-plan", "schema_version": 2,
     "tool": {"name": "rffsurgery", "version": "0.1.0"}, ...}

``schema`` says what the file is, ``schema_version`` (an integer) how it is laid out,
``tool`` which release wrote it (for messages only).  A reader states the newest
version it understands and gets a one-line error, with the fix, for anything else.
Files written before this tag was shared still load: their ``"schema":
"rffsurgery.recipe/1"`` (recipes, ERF and analysis JSON) or ``"format":
"rffsurgery.train-checkpoint/1"`` (checkpoints) are read as kind and version.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import RffError

__all__ = ["kind_of", "read_stamp", "stamp"]

PREFIX = "rffsurgery."


def stamp(kind: str, version: int, tool_version: str | None = None) -> dict[str, Any]:
    """The tag fields of a ``kind`` document in layout ``version``, written by this release (or ``tool_version``:
    a document read and written again keeps the release that made it)."""
    return {"schema": PREFIX + kind, "schema_version": version,
            "tool": {"name": "rffsurgery", "version": tool_version or __version__}}


def _legacy(data: dict[str, Any]) -> tuple[str, int] | None:
    """``"rffsurgery.KIND/N"`` in ``schema`` (or a checkpoint's ``format``), as written before the shared tag."""
    for key in ("schema", "format"):
        value = data.get(key)
        if isinstance(value, str) and value.startswith(PREFIX) and "/" in value:
            kind, _, number = value[len(PREFIX):].rpartition("/")
            if number.isdigit() and len(number) < 6:
                return kind, int(number)
    return None


def kind_of(data: Any) -> str | None:
    """What kind of rffsurgery document ``data`` is (``"train-checkpoint"``, ``"freeze-plan"`` …), else ``None``."""
    if not isinstance(data, dict):
        return None
    schema = data.get("schema")
    if isinstance(schema, str) and schema.startswith(PREFIX) and "/" not in schema:
        return schema[len(PREFIX):]
    old = _legacy(data)
    return old[0] if old is not None else None


def read_stamp(data: Any, kind: str, newest: int, error: type[RffError], what: str) -> int:
    """The ``schema_version`` of ``data`` if it is a ``kind`` document this release reads, else ``error``.

    ``what`` names the document in messages (``"a freeze plan"``).  A newer layout than
    ``newest`` asks for an upgrade; a bool, a float or an absurd number is refused.
    """
    if not isinstance(data, dict):
        raise error(f"{what} is a JSON object, not a {type(data).__name__}")
    old = _legacy(data)
    if old is not None and "schema_version" not in data:
        found, version = old
    else:
        schema = data.get("schema")
        if schema != PREFIX + kind:
            shown = schema if schema is not None else data.get("format")
            raise error(f"not {what} (schema {shown!r}, expected {PREFIX + kind!r})")
        found, version = kind, data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise error(f"{what}: schema_version must be an integer, got {version!r}")
    if found != kind:
        raise error(f"not {what} (schema {PREFIX + found!r}, expected {PREFIX + kind!r})")
    if version > newest:
        tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
        writer = tool.get("version", "?") if isinstance(tool.get("version", "?"), str) else "?"
        if version > 10**6:  # not a version any release wrote: an edited or foreign file
            raise error(f"{what}: schema_version {str(version)[:8]}… ({len(str(version))} digits) is not a version")
        raise error(f"written by rffsurgery {writer} with {kind} schema v{version}; this version ({__version__}) "
                    f"reads up to v{newest}: upgrade rffsurgery")
    if version < 1:
        raise error(f"{what}: unsupported schema_version {version}")
    return version
