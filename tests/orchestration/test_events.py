"""What Dagster records follows the runs and the assets, not the days (docs/decisions/0035): a range's build
writes the events of a one-day build, besides one landed and one published day each."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from application.runs import PLANNED_EVENTS
from dataops.core.settings import Settings
from orchestration.lib.names import EXTRACTS_KEY, PUBLISHED_DAYS_KEY
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import run_job

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("events")]
START = dt.date(2025, 3, 1)
LONG = 10


def events(root: Path, days: int) -> tuple[Counter[str], Counter[str]]:
    """The events of a pipeline run over ``days`` days, by type, and the materialisations by asset."""
    with dg.DagsterInstance.ephemeral() as instance:
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


def test_a_range_writes_the_events_of_a_day_besides_one_per_landed_and_published_day(tmp_path: Path) -> None:
    sources = Settings(tmp_path / "sources").sources_dir
    # three days against ten: anything that grew with the days would differ (ten days cross a week's end)
    simulate(sources, START + dt.timedelta(days=LONG - 1), SimConfig(seed=11, scale=0.02, start=START))
    for name in ("short", "long"):
        shutil.copytree(sources, Settings(tmp_path / name).sources_dir)
    short_kinds, short_assets = events(tmp_path / "short", 3)
    long_kinds, long_assets = events(tmp_path / "long", LONG)

    per_day = {EXTRACTS_KEY.to_user_string(), PUBLISHED_DAYS_KEY.to_user_string()}
    assert {k: short_assets[k] for k in per_day} == dict.fromkeys(per_day, 3)
    assert {k: long_assets[k] for k in per_day} == dict.fromkeys(per_day, LONG)
    # every other asset: one materialisation per run, whatever the days
    assert {k: n for k, n in long_assets.items() if k not in per_day} == {
        k: n for k, n in short_assets.items() if k not in per_day
    }
    assert all(n == 1 for k, n in long_assets.items() if k not in per_day)
    long_kinds["ASSET_MATERIALIZATION"] -= 2 * (LONG - 3)
    assert long_kinds == short_kinds  # and nothing else grows with the days: planning, checks, outputs
