"""The layers point one way (the README's map, docs/decisions/0034): every import, lazy ones included."""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each package and the project packages it may import; anything else is an import pointing up or sideways.
ALLOWED = {
    "registry": set(),
    "source_systems": {"registry"},
    "quality": {"registry"},
    "dataops": {"registry", "quality"},
    "orchestration": {"registry", "quality", "dataops"},
    "application": {"registry", "quality", "dataops", "orchestration", "source_systems"},
    "benchmarks": {"registry", "quality", "dataops", "orchestration", "source_systems", "application"},
}
# The frameworks of the upper layers: the orchestrator and the CLI belong to the Dagster code location and to
# the application; the library, the quality rules, the registry and the simulated world never import them.
FRAMEWORKS = {"dagster", "dagster_dbt", "dagster_postgres", "dagster_webserver", "dagster_graphql", "typer", "click"}
FRAMEWORK_FREE = {"registry", "source_systems", "quality", "dataops"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def project_imports() -> dict[Path, set[str]]:
    return {path: imports_of(path) for package in ALLOWED for path in (ROOT / package).rglob("*.py") if path.is_file()}


def test_every_import_points_down_the_layers() -> None:
    wrong = []
    for path, modules in project_imports().items():
        package = path.relative_to(ROOT).parts[0]
        for module in modules:
            target = module.split(".")[0]
            if target in ALLOWED and target != package and target not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_the_library_and_below_import_neither_the_orchestrator_nor_a_cli() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, modules in project_imports().items()
        if path.relative_to(ROOT).parts[0] in FRAMEWORK_FREE
        for module in modules
        if module.split(".")[0] in FRAMEWORKS
    ]
    assert not wrong, "framework imports below the code location:\n" + "\n".join(sorted(wrong))


def test_the_rooms_of_each_layer_import_each_other_without_a_cycle() -> None:
    """Within a package, its sub-packages (the library's rooms, the application's parts) form no cycle."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path, modules in project_imports().items():
        parts = path.relative_to(ROOT).with_suffix("").parts
        room = ".".join(parts[:2]) if len(parts) > 2 else parts[0]
        for module in modules:
            pieces = module.split(".")
            if pieces[0] == parts[0] and len(pieces) > 1 and len(parts) > 2:
                target = ".".join(pieces[:2])
                if target != room and (ROOT / pieces[0] / pieces[1]).is_dir():
                    edges[room].add(target)
    try:
        list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"a cycle between rooms: {' -> '.join(cycle.args[1])}")


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The parser finds lazy imports too (the check would pass vacuously otherwise)."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from orchestration.definitions import defs\n    import application.cli\n")
    assert imports_of(source) == {"orchestration.definitions", "application.cli"}
