"""A tiny business operated by the real `dataops` command in subprocesses: two days backfilled (``baseline``),
then the third day run (``clean``). The run-recovery cases start from ``baseline`` and must converge to
``clean``; the operating commands' tests (status, kpis) read a copy of ``clean``. Both modules carry the xdist
group "recovery", so one worker builds the two states once."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import PROJECT_ROOT, Settings
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

START = dt.date(2025, 4, 1)
DAY = START + dt.timedelta(days=2)  # the day each recovery case runs (and kills), after the smallest history: two days
DATAOPS = str(Path(sys.executable).with_name("dataops"))


@dataclass(frozen=True)
class Case:
    root: Path
    said: tuple[str, ...] = ()  # what the commands that made this state printed, in order

    @property
    def settings(self) -> Settings:
        return Settings(self.root)

    @property
    def home(self) -> Path:
        return self.settings.dagster_home

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATAOPS_DATA_DIR": str(self.root), "DAGSTER_HOME": "", "COLUMNS": "200"}

    def start(self, *args: str) -> subprocess.Popen[str]:
        out = subprocess.PIPE
        return subprocess.Popen([DATAOPS, *args], env=self.env(), cwd=PROJECT_ROOT, stdout=out, stderr=out, text=True)

    def run(self, *args: str, timeout: float = 900) -> tuple[int, str]:
        process = self.start(*args)
        output, errors = process.communicate(timeout=timeout)
        return process.returncode, output + errors

    def kpis(self) -> list[tuple[object, ...]]:
        with duckdb.connect(str(self.settings.analytics_db), read_only=True) as conn:
            sql = "select date_day, kpi_name, value, is_final from kpis.kpi_daily order by all"
            return conn.execute(sql).fetchall()

    def history(self) -> tuple[int, int]:
        """Publishes analysts saw, in their file and as the build warehouse records them."""
        with duckdb.connect(str(self.settings.analytics_db), read_only=True) as conn:
            seen = conn.execute("select count(*) from publish.publish_log").fetchone()[0]
        with duckdb.connect(str(self.settings.build_db), read_only=True) as conn:
            recorded = conn.execute("select count(*) from publish.publish_log").fetchone()[0]
        return seen, recorded


def copy(case: Case, target: Path) -> Case:
    shutil.copytree(case.root, target, dirs_exist_ok=True)
    return Case(target, case.said)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """Two days published by `dataops backfill`; the third simulated, not yet run (do not modify: copy it)."""
    root = tmp_path_factory.mktemp("recovery-baseline")
    simulate(Settings(root).sources_dir, DAY, SimConfig(seed=11, scale=0.02, start=START))
    code, output = Case(root).run("backfill", "--start", str(START), "--end", str(DAY - dt.timedelta(days=1)))
    assert code == 0, output
    return Case(root, (output,))


@pytest.fixture(scope="session")
def clean(baseline: Case, tmp_path_factory: pytest.TempPathFactory) -> Case:
    """The third day run once by `dataops run`, never killed: what every recovered case must converge to (do not
    modify: copy it)."""
    case = copy(baseline, tmp_path_factory.mktemp("recovery-clean"))
    code, output = case.run("run", "--date", str(DAY))
    assert code == 0, output
    # what an operator reads: the progress and the outcome; no library warnings, no dbt log lines
    assert f"daily_elt_job {DAY}" in output and "succeeded" in output
    for noise in ("BetaWarning", "SupersessionWarning", "Running with dbt", "PASS="):
        assert noise not in output, output
    return Case(case.root, (*baseline.said, output))
