"""A range landed, built and published from scratch on one Dagster instance, shared by the two modules of the xdist
group "events": ``test_events.py`` compares the events its runs wrote with a longer range's, ``test_nothing_new.py``
lands its days again. One landing and build (a Dagster run and a whole dbt build) serves both."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from application.runs import PLANNED_EVENTS
from dataops.core.settings import Settings
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

START = dt.date(2025, 3, 1)
SHORT = 3  # the days of the shared range
LONG = 10  # the days simulated: test_events.py's longer range


@dataclass(frozen=True)
class Ranged:
    """``SHORT`` days from ``START`` landed, built and published in ``root`` on ``instance``."""

    root: Path
    instance: dg.DagsterInstance
    kinds: Counter[str]  # the events its landing and build runs wrote, by type (counted before any test ran)
    assets: Counter[str]  # its materialisations, by asset
    sources: Path  # the ``LONG`` simulated days, as simulated: for another data directory


def range_events(root: Path, days: int, instance: dg.DagsterInstance) -> tuple[Counter[str], Counter[str]]:
    """Land and build ``days`` days from ``START`` in ``root`` (a landing run, then its build run) and return the
    events the runs wrote, by type, and the materialisations, by asset."""
    from tests.pipeline import run_job

    # as every platform entry point runs (docs/decisions/0014): one planned event per asset for a range
    env = {PLANNED_EVENTS: "true"}
    result = run_job(root, START, START + dt.timedelta(days=days - 1), instance=instance, **env)
    assert result.success
    records = [r for run in result.runs for r in instance.get_records_for_run(run.run_id).records]
    kinds = Counter(r.event_log_entry.dagster_event_type.value for r in records if r.event_log_entry.is_dagster_event)
    assets = Counter(
        r.event_log_entry.dagster_event.asset_key.to_user_string()  # type: ignore[union-attr]
        for r in records
        if r.event_log_entry.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    return kinds, assets


@pytest.fixture(scope="session")
def first_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ranged]:
    """``SHORT`` days built and published on an instance kept for the session; the tests that use it carry
    ``pytest.mark.xdist_group("events")`` so that one worker builds it once. The sources simulate ``LONG`` days
    (the systems of record only: no run here lands the product's events, so none are simulated)."""
    folder = tmp_path_factory.mktemp("first-days")
    simulated = Settings(folder / "simulated").sources_dir
    config = SimConfig(seed=11, scale=0.02, start=START, product_events=False)
    simulate(simulated, START + dt.timedelta(days=LONG - 1), config)
    root = folder / "data"
    shutil.copytree(simulated, Settings(root).sources_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        kinds, assets = range_events(root, SHORT, instance)
        yield Ranged(root, instance, kinds, assets, simulated)
