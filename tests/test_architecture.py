"""The house rules, checked on the source with the standard library (``ast``), so they stay true.

* no import circles between the package's modules (every import counts: module level,
  inside functions, under ``TYPE_CHECKING``);
* the layers point one way: the core never imports the trainer, the reports or the CLI;
  the reports never import the trainer or the CLI; the trainer never imports the CLI;
  the analysis never imports tagging or plans (tags → analysis, plan → analysis);
  the package itself (``rffsurgery/__init__.py``, the public API) re-exports the core and the
  HTML report, never the trainer or the CLI;
* every third-party package the code imports is declared in pyproject.toml, and every
  declared dependency is imported by the package.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rffsurgery"
UPPER = {"cli", "train", "reports", "integrations", "__main__"}  # everything else is the core
FACADE = "rffsurgery"  # the public API: what users import by name, ``rffsurgery.html_report`` included
IMPORT_NAMES = {"pillow": "PIL"}  # distribution → the module it installs, where they differ


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level third-party names) that ``name`` imports anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "rffsurgery" or target.startswith("rffsurgery."):
                while target not in MODULES:  # ``import rffsurgery.x.y as z`` → the deepest module that exists
                    target = target.rpartition(".")[0]
                inside.add(target)
            else:
                outside.add(target.split(".")[0])
    inside.discard(name)
    return inside, outside


GRAPH = nx.DiGraph()
THIRD_PARTY: dict[str, set[str]] = {}
for _name, _path in MODULES.items():
    GRAPH.add_node(_name)
    _inside, _outside = _imports(_name, _path)
    GRAPH.add_edges_from((_name, target) for target in _inside)
    THIRD_PARTY[_name] = {m for m in _outside if m not in sys.stdlib_module_names}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_walk_sees_relative_imports() -> None:
    """The checks below mean something only if relative imports are resolved."""
    assert ("rffsurgery.analysis.analyzer", "rffsurgery.trace.capture") in GRAPH.edges
    assert ("rffsurgery.cli", "rffsurgery.cli.analyze") in GRAPH.edges
    assert len(GRAPH) > 60


def test_no_import_circles() -> None:
    cycles = sorted(nx.simple_cycles(GRAPH), key=len)
    assert not cycles, "import circles: " + "; ".join(" → ".join(c + c[:1]) for c in cycles[:5])


@pytest.mark.parametrize("lower, forbidden", [
    ("core", UPPER),
    ("facade", UPPER - {"reports"}),
    ("reports", {"train", "cli", "integrations"}),
    ("train", {"cli", "integrations"}),
    ("integrations", {"train", "cli"}),
    ("analysis", {"tags", "plan", "surgery"}),
    ("geometry", {"analysis", "tags", "plan", "surgery", "models", "data"}),
])
def test_layers_point_one_way(lower: str, forbidden: set[str]) -> None:
    def inside(module: str) -> bool:
        if lower == "facade" or module == FACADE:
            return lower == "facade" and module == FACADE
        room = _room(module)
        return room not in UPPER if lower == "core" else room == lower

    bad = sorted(f"{a} → {b}" for a, b in GRAPH.edges if inside(a) and _room(b) in forbidden and _room(a) != _room(b))
    assert not bad, f"{lower} imports what sits above it: " + ", ".join(bad)


def test_every_import_is_declared_and_every_declaration_imported() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def module_of(requirement: str) -> str:
        dist = requirement.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            dist = dist.split(sep)[0]
        return IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_"))

    core = {module_of(r) for r in project["dependencies"]}
    extras = {module_of(r) for name, reqs in project["optional-dependencies"].items() if name != "test" for r in reqs}
    imported = set().union(*THIRD_PARTY.values())
    assert imported - core - extras == set(), "imported but not declared"
    assert core - imported == set(), "declared but never imported by the package"
    assert extras - imported == set(), "an extra that the package never imports"


def _tree_block() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def _region(lines: list[str], folder: str) -> list[str]:
    """The lines indented under ``folder/`` in the tree block."""
    for i, line in enumerate(lines):
        if line.strip().split()[0] == folder + "/":
            indent = len(line) - len(line.lstrip())
            out = []
            for later in lines[i + 1:]:
                if len(later) - len(later.lstrip()) <= indent:
                    break
                out.append(later)
            return out
    return []


def test_docs_architecture_lists_every_module() -> None:
    """docs/architecture.md matches the tree: every module is named under its room (and every room is there)."""
    lines = _tree_block()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        region = lines
        for folder in rel.parts[:-1]:
            region = _region(region, folder)
            if not region:
                break
        words = {w.strip(",():") for line in region for w in line.split()}
        if rel.name != "__init__.py" and rel.name not in words or not region:
            missing.append(str(rel))
    assert not missing, f"docs/architecture.md's tree does not name: {', '.join(missing)}"
