"""A small enterprise run end to end through Dagster (ingestion and dbt), once per session."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dataops.settings import Settings
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

START = dt.date(2025, 1, 1)
DAYS = 150
END = START + dt.timedelta(days=DAYS - 1)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 simulated days at a small scale, ingested and transformed by one Dagster run (do not modify)."""
    root = tmp_path_factory.mktemp("built")
    simulate(Settings(root).sources_dir, END, SimConfig(seed=21, scale=0.08, start=START))
    result = run_job(root, START, END)
    assert result.success
    return root
