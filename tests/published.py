"""A business simulated in lock-step with the pipeline, up to the day before a late journal line arrives."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.core.warehouse import connect
from dataops.publish.analyst_warehouse import reconcile_history
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

# January closes on February 7 (5th business day); its late accrual lines arrive in the days after.
START = dt.date(2025, 1, 20)
CONFIG = SimConfig(
    seed=4,
    scale=0.04,
    start=START,
    dirt=DirtRates(late_journal=1.0, held_back_payment=0.0),
    product_events=False,  # not read by the pipeline yet
)


@dataclass
class Published:
    root: Path
    late_day: dt.date  # the first day a journal line for the closed January arrives

    @property
    def settings(self) -> Settings:
        return Settings(self.root)


def first_late_arrival(scratch: Path) -> dt.date:
    simulate(scratch, dt.date(2025, 2, 28), CONFIG)
    dirt = pl.read_parquet(scratch / "truth" / "dirt_log.parquet").filter(pl.col("kind") == "late_arrival")
    return START + dt.timedelta(days=int(dirt["day"].min()))


def build_published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """Simulated and published through the day before the first late line (do not modify; copy it)."""
    late_day = first_late_arrival(tmp_path_factory.mktemp("scratch"))
    root = tmp_path_factory.mktemp("published")
    simulate(Settings(root).sources_dir, late_day - dt.timedelta(days=1), CONFIG)
    result = run_job(root, START, late_day - dt.timedelta(days=1))
    assert result.success
    return Published(root, late_day)


def copy_of(published: Published, target: Path) -> Published:
    shutil.copytree(published.root, target, dirs_exist_ok=True)
    return Published(target, published.late_day)


# An analyst's session: one connection held open across the run, reading on each "read" line.
READER = textwrap.dedent("""
    import duckdb, json, sys, time
    conn = duckdb.connect(sys.argv[1], read_only=True)
    query = "select (select max(publish_id) from publish.publish_log), (select sum(value) from kpis.kpi_daily)"
    first = conn.execute(query).fetchone()
    print(json.dumps(["ready", str(first)]), flush=True)
    reads, changed = 0, 0
    while sys.stdin.readline().strip() == "read":
        reads += 1
        changed += conn.execute(query).fetchone() != first
        print(json.dumps(["read", reads]), flush=True)
    print(json.dumps(["done", reads, changed, str(first)]), flush=True)
""")


@dataclass
class LateRun:
    """The late day run once on a copy of ``published`` while an analyst held the published file open."""

    case: Published
    run_id: str
    reader: list[Any]  # the reader's last line: ["done", reads, reads that saw another answer, its first answer]


def run_late_day(published: Published, target: Path) -> LateRun:
    """One run of the late day with a reader holding the analysts' file (do not modify the result; copy it).

    The publishing tests check what the reader saw and re-run the day on a copy; the dashboard shows the
    restatement the run made: one run serves both (tests/conftest.py ``late_run``).
    """
    case = copy_of(published, target)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(case.settings.analytics_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    assert json.loads(reader.stdout.readline())[0] == "ready"
    simulate(case.settings.sources_dir, case.late_day)
    late = run_job(case.root, case.late_day, case.late_day)
    assert late.success  # the reader held the file open all along
    for _ in range(3):
        reader.stdin.write("read\n")
        reader.stdin.flush()
        reader.stdout.readline()
        time.sleep(0.05)
    reader.stdin.write("stop\n")
    reader.stdin.flush()
    done = json.loads(reader.stdout.readline())
    reader.wait(timeout=10)
    return LateRun(case, late.run_id, done)


def built_not_published(published: Published, late_run: LateRun, target: Path) -> Published:
    """The late day built but not published yet, in ``target``: ``late_run``'s build warehouse with the analyst
    files of the day before (``published``'s), for the tests that need only the late day's publish.

    A publish takes the history of the file analysts hold as the truth (``reconcile_history``): done here
    first, it removes the late day's publish from the build warehouse's history as a run that stopped before
    publishing would have left it, so the state before the publish is what such a run leaves.
    """
    case = copy_of(late_run.case, target)
    shutil.copyfile(published.settings.analytics_db, case.settings.analytics_db)
    shutil.copyfile(published.settings.restricted_db, case.settings.restricted_db)
    with connect(case.settings.build_db) as conn:
        reconcile_history(conn, case.settings)
        recorded = conn.execute("select publish_id from publish.publish_log").fetchall()
    with connect(published.settings.build_db, read_only=True) as conn:
        assert recorded == conn.execute("select publish_id from publish.publish_log").fetchall()
    return case
