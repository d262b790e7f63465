"""The product's events in Dagster: a sensor launches a micro-batch for delivered hours, the batch lands them
with its checks (drift reported, the hourly volume breaker), and a duplicate delivery changes nothing."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.ingest import events
from dataops.ingest.events_volume import check_hours
from orchestration.defs.product.events import EVENTS_JOB, product_events, product_events_sensor
from orchestration.lib.resources import PlatformResource
from registry.loader import load_registry


def _event(event_id: str, event_type: str, at: dt.datetime, user: str | None = "003000000001") -> str:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "user_id": user,
            "device_id": "w-0001",
            "account_ref": "001000000001",
            "context": {"platform": "web", "app_version": "5.2.0", "user_agent": "Mozilla/5.0 Chrome/124.0"},
            "properties": {"query": "ask jane.doe@example.com"},
            "occurred_at": stamp,
            "sent_at": stamp,
            "received_at": stamp,
        }
    )


def deliver(events_dir: Path, hour: dt.datetime, lines: list[str], name: str = "events-c1.ndjson.gz") -> None:
    """One collector object of an hour and the hour's manifest, as the collectors write them."""
    folder = events_dir / f"date={hour.date().isoformat()}" / f"hour={hour.hour:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    blob = gzip.compress(("\n".join(lines) + "\n").encode())
    (folder / name).write_bytes(blob)
    entry = {"name": name, "collector": "c1", "lines": len(lines), "bytes": len(blob)}
    manifest = {
        "date": hour.date().isoformat(),
        "hour": hour.hour,
        "delivered_at": (hour + dt.timedelta(hours=1, minutes=2)).isoformat() + "Z",
        "objects": [{**entry, "sha256": hashlib.sha256(blob).hexdigest()}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(tmp_path))
    return tmp_path


def _run(data_dir: Path) -> dg.ExecuteInProcessResult:
    resources = dg.Definitions(resources={"platform": PlatformResource(data_dir=str(data_dir))})
    job = dg.Definitions.merge(product_events(), resources).resolve_job_def(EVENTS_JOB)
    return job.execute_in_process()


def test_delivered_hours_launch_a_batch_that_lands_them_and_reports_drift(data_dir: Path) -> None:
    settings = Settings(data_dir)
    hour = dt.datetime(2025, 3, 3, 10)
    deliver(
        settings.product_events,
        hour,
        [
            _event("e1", "report.viewed", hour + dt.timedelta(minutes=1)),
            _event("e2", "report.scheduled", hour + dt.timedelta(minutes=2)),  # not in the tracking plan
            '{"event_type": "page.viewed"',
        ],
    )
    context = dg.build_sensor_context()
    first = product_events_sensor(context)
    assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1

    result = _run(data_dir)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["event_contract"].passed
    assert checks["event_contract"].metadata["unknown_event_types"].value == {"report.scheduled": 1}
    assert checks["hourly_volume"].passed and checks["landed_schema"].passed
    landed = pl.read_parquet(events.current_event_files(settings), hive_partitioning=False)
    assert sorted(landed["event_id"]) == ["e1", "e2"]
    assert landed.filter(pl.col("event_id") == "e2")["known_type"].to_list() == [False]
    assert not landed["properties"].str.contains("jane.doe").any()
    assert events.quarantine(settings)["_line"].to_list() == [3]

    # nothing pending: the sensor skips; a second run lands nothing
    again = product_events_sensor(dg.build_sensor_context())
    assert isinstance(again, dg.SensorResult) and not again.run_requests
    assert _run(data_dir).success


def test_a_duplicate_delivery_lands_nothing_new(data_dir: Path) -> None:
    settings = Settings(data_dir)
    hour = dt.datetime(2025, 3, 3, 10)
    deliver(settings.product_events, hour, [_event("e1", "report.viewed", hour)])
    assert _run(data_dir).success
    versions = sorted((settings.lake_dir / "raw" / "product" / "events").rglob("*.parquet"))
    later = hour + dt.timedelta(hours=3)  # the same event again, three hours later, in another object
    deliver(settings.product_events, later, [_event("e1", "report.viewed", hour)], name="events-c2.ndjson.gz")
    result = _run(data_dir)
    assert result.success
    materialization = result.asset_materializations_for_node("ingest_product_events")[0]
    assert materialization.metadata["duplicates"].value == 1 and materialization.metadata["events_new"].value == 0
    assert sorted((settings.lake_dir / "raw" / "product" / "events").rglob("*.parquet")) == versions


def test_the_hourly_breaker_trips_on_a_flood_and_a_hole_but_not_on_the_usual_shape() -> None:
    registry = load_registry()
    usual = [(f"2025-03-{d:02d}T10", 400 if d % 7 not in (1, 2) else 40) for d in range(1, 15)]
    rows = [*usual, ("2025-03-15T10", 400), ("2025-03-16T10", 9000), ("2025-03-17T10", 3)]
    ledger = pl.DataFrame(rows, schema=["hour", "lines"], orient="row")
    outcome = check_hours(ledger, ["2025-03-15T10", "2025-03-16T10"], registry)
    assert list(outcome.tripped) == ["2025-03-16T10"] and "above" in outcome.tripped["2025-03-16T10"]
    allowed = check_hours(ledger, ["2025-03-16T10"], registry, allow={"product.events"})
    assert allowed.passed and allowed.allowed
    # a hole is only judged where the smallest usual hour is large enough to tell
    steady = pl.DataFrame({"hour": [f"2025-03-{d:02d}T10" for d in range(1, 18)], "lines": [400] * 16 + [3]})
    assert list(check_hours(steady, ["2025-03-17T10"], registry).tripped) == ["2025-03-17T10"]
    assert check_hours(
        ledger, ["2025-03-17T10"], registry
    ).passed  # its range holds quiet hours (40 lines): too few to tell a hole


def test_hourly_batches_keep_a_few_versions_of_a_date_the_newest_holding_it_all(data_dir: Path) -> None:
    settings = Settings(data_dir)
    for k in range(events.KEEP_VERSIONS + 2):
        hour = dt.datetime(2025, 3, 3, 8 + k)
        deliver(settings.product_events, hour, [_event(f"e{k}", "report.viewed", hour)])
        assert _run(data_dir).success
    folder = settings.lake_dir / "raw" / "product" / "events" / "date=2025-03-03"
    versions = sorted(folder.glob("part-*.parquet"))
    assert len(versions) == events.KEEP_VERSIONS
    assert sorted(pl.read_parquet(versions[-1], hive_partitioning=False)["event_id"]) == [
        f"e{k}" for k in range(events.KEEP_VERSIONS + 2)
    ]
