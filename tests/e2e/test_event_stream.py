"""The event stream in motion with the real daemon: delivered hours are landed by sensor-launched micro-batches
within minutes, and a duplicate delivery launches a batch that changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from dataops.ingest import events
from tests.e2e.conftest import GROUP, Services, wait_for
from tests.orchestration.test_events_assets import _event, deliver

pytestmark = [pytest.mark.e2e, GROUP]
JOB = "product_events_job"
# The freshness target is 15 minutes from delivery; the sensor ticks every minute (every 5 s here), a batch
# takes seconds.
WITHIN = 15 * 60


def _event_runs(services: Services) -> list[dict[str, Any]]:
    data = services.graphql("""{ runsOrError { ... on Runs { results { runId jobName status } } } }""")
    return [r for r in data["runsOrError"]["results"] if r["jobName"] == JOB]


def _succeeded(services: Services, count: int) -> bool:
    found = _event_runs(services)  # one look at the runs for both
    done = [r for r in found if r["status"] == "SUCCESS"]
    failed = [r for r in found if r["status"] in {"FAILURE", "CANCELED"}]
    assert not failed, (failed, (services.logs / "daemon.log").read_text()[-3000:])
    return len(done) >= count


def _landed(services: Services) -> pl.DataFrame:
    files = events.current_event_files(services.settings)
    return pl.read_parquet(files, hive_partitioning=False) if files else pl.DataFrame()


def test_delivered_hours_land_within_the_freshness_target_and_a_duplicate_changes_nothing(
    services: Services,
) -> None:
    folder = services.settings.product_events
    hour = dt.datetime(2025, 6, 6, 9)
    deliver(folder, hour, [_event("a1", "report.viewed", hour), _event("a2", "workflow.run", hour)])
    wait_for(lambda: _landed(services).height == 2, WITHIN, "the sensor's batch to land the hour", interval=5)
    wait_for(lambda: _succeeded(services, 1), WITHIN, "the batch's run to finish", interval=5)
    versions = sorted(services.settings.lake_dir.joinpath("raw", "product", "events").rglob("*.parquet"))

    later = hour + dt.timedelta(hours=2)  # at-least-once: the same event in a later hour's object
    deliver(folder, later, [_event("a1", "report.viewed", hour)], name="events-c2.ndjson.gz")
    wait_for(lambda: _succeeded(services, 2), WITHIN, "the duplicate's batch", interval=5)
    assert events.pending(services.settings) == []
    assert sorted(_landed(services)["event_id"]) == ["a1", "a2"]
    assert sorted(services.settings.lake_dir.joinpath("raw", "product", "events").rglob("*.parquet")) == versions
