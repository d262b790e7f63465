"""The platform's own processes collect reference cycles less often than CPython's default (dataops/core/collector.py):
the command line, the dbt process and the code location's processes; each checked in a new interpreter, which
starts with CPython's thresholds."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from dataops.core.collector import THRESHOLDS

DBT_CHILD = """
import gc, sys
from dataops.transform import dbt_child
dbt_child.run_dbt = lambda args: print(gc.get_threshold(), flush=True) or 0  # what dbt's command would meet
sys.argv = ["dataops-dbt", "--version"]
dbt_child.main()
"""


@pytest.fixture(scope="module")
def default() -> tuple[int, ...]:
    """A new interpreter's thresholds, with nothing of the platform's imported."""
    found = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold())"], capture_output=True)
    return tuple(ast.literal_eval(found.stdout.decode()))


@pytest.mark.parametrize(
    "program",
    [
        "import gc, application.cli; print(gc.get_threshold())",  # every `dataops` command
        "import gc, orchestration.definitions; print(gc.get_threshold())",  # the code server, each run's worker
        DBT_CHILD,  # `dataops-dbt`, before dbt imports anything
    ],
    ids=["command line", "code location", "dbt process"],
)
def test_the_platforms_processes_collect_cycles_less_often(program: str, default: tuple[int, ...]) -> None:
    assert default != THRESHOLDS  # a new interpreter starts with CPython's own
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, check=True)
    assert ast.literal_eval(done.stdout.decode().strip().splitlines()[-1]) == THRESHOLDS, done.stderr.decode()
