"""The event stream's micro-batches, checked against the dirt log and the usage truth of the tiny simulation:
every kind of dirt handled, nothing real lost, nothing bogus counted, and a re-run changes nothing."""

from __future__ import annotations

import datetime as dt
from itertools import groupby
from pathlib import Path

import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.ingest import events
from quality.contracts.product import LandedEvents
from registry.loader import load_registry
from tests.source_systems.helpers import product_lines

pytestmark = pytest.mark.xdist_group("tiny")

USAGE = load_registry().usage
EMAIL = events.scrub_rules()[0][1]


def _ingest_in_delivery_order(
    settings: Settings, todo: list[events.DeliveredObject] | None = None, days: int = 7
) -> list[events.BatchReport]:
    """One batch per ``days`` days of delivery, in the order of delivery (as the sensor runs them, coarser)."""
    todo = events.pending(settings) if todo is None else todo
    first = todo[0].delivered_at.date()
    return [
        events.ingest_events(settings, list(objs))
        for _, objs in groupby(todo, key=lambda o: (o.delivered_at.date() - first).days // days)
    ]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, tiny_sources: Path) -> Settings:
    root = tmp_path_factory.mktemp("events")
    (root / "sources").symlink_to(tiny_sources)
    settings = Settings(root)
    reports = _ingest_in_delivery_order(settings)
    assert len(reports) > 10 and all(not r.mismatched for r in reports)
    return settings


@pytest.fixture(scope="module")
def lake(ingested: Settings) -> pl.DataFrame:
    return pl.read_parquet(events.current_event_files(ingested), hive_partitioning=False)


@pytest.fixture(scope="module")
def lines(tiny_sources: Path) -> pl.DataFrame:
    return product_lines(tiny_sources)


@pytest.fixture(scope="module")
def dirt(tiny_sources: Path) -> pl.DataFrame:
    log = pl.read_parquet(tiny_sources / "truth" / "dirt_log.parquet")
    return log.filter((pl.col("system") == "product") & (pl.col("table") == "events"))


def _keys(dirt: pl.DataFrame, kind: str) -> set[str]:
    keys = set(dirt.filter(pl.col("kind") == kind)["key"])
    assert keys, kind  # the tiny simulation shows every kind
    return keys


def test_every_event_that_parses_lands_once_and_nothing_else(lake: pl.DataFrame, lines: pl.DataFrame) -> None:
    assert lake["event_id"].is_unique().all()
    assert set(lake["event_id"]) == set(lines.filter("ok")["event_id"])
    LandedEvents.validate(lake)


def test_duplicates_keep_the_first_copy_received(lake: pl.DataFrame, lines: pl.DataFrame, dirt: pl.DataFrame) -> None:
    first = lines.filter("ok").group_by("event_id").agg(pl.col("received_at").min(), copies=pl.len())
    duplicated = _keys(dirt, "duplicate_delivery")
    landed = lake.join(first, on="event_id", suffix="_first")
    assert (landed["received_at"] == landed["received_at_first"]).all()
    again = landed.filter(pl.col("event_id").is_in(list(duplicated)))
    assert again.height > 0 and (again["copies"] >= 2).sum() > 0.9 * again.height  # some copies not sent yet


def test_quarantine_holds_every_malformed_and_truncated_line_with_its_reason(
    ingested: Settings, dirt: pl.DataFrame
) -> None:
    quarantine = events.quarantine(ingested)
    at = quarantine.select(key=pl.concat_str("_object", pl.lit(":"), pl.col("_line").cast(pl.String)), reason="reason")
    truncated, malformed = _keys(dirt, "truncated_object"), _keys(dirt, "malformed_line")
    assert set(at["key"]) == truncated | malformed
    assert set(at.filter(pl.col("reason") == events.TRUNCATED)["key"]) == truncated
    assert at["reason"].null_count() == 0 and at["key"].is_unique().all()


def test_personal_data_is_scrubbed_before_it_lands(lake: pl.DataFrame, ingested: Settings, dirt: pl.DataFrame) -> None:
    typed = lake.filter(pl.col("event_id").is_in(list(_keys(dirt, "pii_in_property"))))
    assert typed.height > 0 and typed["scrubbed"].all()
    assert typed["properties"].str.contains("[email removed]", literal=True).all()
    assert not lake["properties"].str.contains(EMAIL).any()
    quarantine = events.quarantine(ingested)
    assert not quarantine["text"].str.contains(EMAIL).any()


def test_bots_and_health_checks_land_flagged_and_only_they(lake: pl.DataFrame, dirt: pl.DataFrame) -> None:
    bogus = _keys(dirt, "bot_traffic") | _keys(dirt, "health_check")
    assert set(lake.filter("excluded")["event_id"]) == bogus & set(lake["event_id"])


def test_renamed_events_take_their_plan_name_and_new_properties_pass(lake: pl.DataFrame, dirt: pl.DataFrame) -> None:
    assert _keys(dirt, "event_renamed") and _keys(dirt, "property_added")
    renamed = lake.filter(pl.col("event_type") == "report.downloaded")
    assert renamed.height > 0 and (renamed["event_name"] == "report.exported").all()
    assert lake["known_type"].all()
    assert lake.filter(pl.col("properties").str.contains('"load_ms"')).height > 0


def test_skewed_clocks_late_and_held_back_hours_are_all_there(
    lake: pl.DataFrame, lines: pl.DataFrame, ingested: Settings, dirt: pl.DataFrame
) -> None:
    skewed = lake.filter(pl.col("event_id").is_in(list(_keys(dirt, "clock_skew"))))
    assert skewed.height > 0 and (skewed["occurred_at"].dt.date() != skewed["event_date"]).any()
    assert ((skewed["event_time"] - skewed["received_at"]).abs() < dt.timedelta(hours=73)).all()
    late = _keys(dirt, "late_delivery") & set(lines.filter("ok")["event_id"])  # the ones delivered by the end
    assert late and late <= set(lake["event_id"])
    held_back = {key.rsplit(":", 1)[0] for key in _keys(dirt, "out_of_order_hour")}
    assert held_back <= set(events.ledger(ingested)["object"])


def test_usage_per_user_and_day_equals_the_truth(lake: pl.DataFrame, ingested: Settings, tiny_sources: Path) -> None:
    """Skewed clocks, late and out-of-order hours, duplicates, bots and stitched devices all in one count."""
    devices = pl.read_parquet(events.current_devices_file(ingested))  # type: ignore[arg-type]
    seats = [USAGE.seat_assigned, USAGE.seat_revoked]
    usage = (
        lake.filter(~pl.col("excluded") & ~pl.col("event_name").is_in(seats))
        .join(devices.select("device_id", device_user="user_id"), on="device_id", how="left")
        .with_columns(user_id=pl.coalesce("user_id", "device_user"))
        .filter(pl.col("user_id").is_not_null())
        .group_by(date="event_date", user_id="user_id")
        .agg(events=pl.len())
    )
    truth = pl.read_parquet(tiny_sources / "truth" / "usage_users_daily.parquet").select("date", "user_id", "events")
    assert usage.sort("date", "user_id").equals(truth.sort("date", "user_id").cast({"events": pl.UInt32}))


def test_batches_in_any_order_land_the_same_lake(tmp_path: Path, tiny_sources: Path) -> None:
    """Late and out-of-order hours: the newest hours first give the lake that the order of delivery gives."""
    lakes = []
    for name in ("forward", "backward"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sources").symlink_to(tiny_sources)
        settings = Settings(tmp_path / name)
        objects = [o for o in events.pending(settings) if o.name < "date=2025-01-12"]
        if name == "forward":
            _ingest_in_delivery_order(settings, objects, days=1)
        else:
            for chunk in (objects[400:], objects[150:400], objects[:150]):
                events.ingest_events(settings, chunk)
        landed = pl.read_parquet(events.current_event_files(settings), hive_partitioning=False).drop(
            "_batch_id", "_ingested_at"
        )
        lakes.append(landed.sort("event_id"))
    assert lakes[0].height > 1000 and lakes[0].equals(lakes[1])


def test_a_rerun_and_a_duplicate_delivery_change_nothing(ingested: Settings) -> None:
    before = _versions(ingested)
    quarantined = events.quarantine(ingested).height
    assert events.pending(ingested) == []
    assert events.ingest_events(ingested).objects == []
    again = events.delivered(ingested.product_events)[:5]
    report = events.ingest_events(ingested, again)  # the same objects delivered again
    assert report.objects and report.landed == 0 and report.dates == [] and report.duplicates == report.events
    assert _versions(ingested) == before
    assert events.quarantine(ingested).height == quarantined


def _versions(settings: Settings) -> list[Path]:
    root = events.events_root(settings)
    return sorted([*(root / events.TABLE).rglob("*.parquet"), *(root / events.DEVICES).glob("*.parquet")])
