"""A business simulated in lock-step with the pipeline, up to the day before a late journal line arrives."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from dataops.core.settings import Settings
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
