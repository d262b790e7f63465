"""The two CI workers start with the definition changes beside groups that run no dbt, then the longest groups
(tests/conftest.py, docs/testing.md)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import GROUP_ORDER, longest_first


def test_the_longest_groups_come_first_then_the_others_by_their_number_of_tests() -> None:
    scopes = ["a.py::t1", "built", "built", "built", "bench", "spark", "ingest", "built", "spark", "x", "x", "recovery"]
    ordered = [scopes[i] for i in longest_first(scopes)]
    assert ordered == [
        "ingest", "spark", "spark", "recovery", "built", "built", "built", "built", "bench", "x", "x", "a.py::t1"
    ]  # fmt: skip
    # the items of one scope keep pytest's order
    assert [i for i in longest_first(scopes) if scopes[i] == "built"] == [1, 2, 3, 7]


def test_every_group_named_longest_first_is_a_group_of_the_suite() -> None:
    """A renamed or removed group would silently lose its early start."""
    used = {
        match
        for path in Path(__file__).parent.rglob("*.py")
        for match in re.findall(r"xdist_group\(\"(\w+)\"\)", path.read_text())
    }
    assert set(GROUP_ORDER) <= used, set(GROUP_ORDER) - used


# What starts a dbt invocation in a test module: a Dagster run, the runner, the code location, the command line.
RUNS_DBT = re.compile(
    r"run_job|run_dbt|build_and_check|defs\(\)|dbt_project\(|dbtRunner|launchRun"
    r"|with_name\(\"dataops\"\)|/ \"dataops\"\)?, \"|bin/dataops\b"
)


def test_the_definition_changes_start_beside_groups_that_run_no_dbt() -> None:
    """The definition-change tests build under other registry versions, whose seeds every dbt invocation shares:
    beside another group's builds, each waits for the other's (docs/testing.md, "Stop 40"). xdist deals the
    first, second and third groups to the workers in turns, the third at once to the first worker (a group of
    two tests counts as nearly done), the fourth to the other worker after the second: those two run beside
    the definitions' builds and must run none."""
    assert GROUP_ORDER[0] == "definitions"
    beside = {GROUP_ORDER[1], GROUP_ORDER[3]}
    modules = [
        path
        for path in sorted(Path(__file__).parent.rglob("test_*.py"))
        if re.search(r"xdist_group\(\"(" + "|".join(beside) + r")\"\)", path.read_text())
    ]
    assert modules
    assert [path.name for path in modules if RUNS_DBT.search(path.read_text())] == []


# A fixture built once for its tests: module-, package- or session-scoped, and writing data (tmp_path_factory).
BUILDS_ONCE = re.compile(r'@pytest\.fixture\(scope="(?:module|package|session)"\)\ndef \w+\([^)]*tmp_path_factory')


def test_a_module_that_builds_its_data_once_runs_on_one_worker() -> None:
    """`--dist loadgroup` deals the tests of an ungrouped module to both workers one by one, and each worker then
    builds the module's fixtures for itself: twice the simulation or the build. So such a module carries an
    xdist group, and every module reading the tiny simulation (`tiny_sources`) the same one, "tiny", so that
    one worker simulates it once (docs/testing.md, "One worker per shared fixture")."""
    ungrouped, not_tiny = [], []
    for path in sorted(Path(__file__).parent.rglob("test_*.py")):
        text = path.read_text()
        if (BUILDS_ONCE.search(text) or "tiny_sources" in text) and "xdist_group(" not in text:
            ungrouped.append(path.name)
        if "tiny_sources" in text and 'xdist_group("tiny")' not in text:
            not_tiny.append(path.name)
    assert ungrouped == [] and not_tiny == [], (ungrouped, not_tiny)
