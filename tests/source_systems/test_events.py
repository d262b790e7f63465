"""The product's event stream as its collectors deliver it: objects, manifests, fields, and every kind of
dirt, each checked against the dirt log in both directions (what is logged is in the objects, and what is
odd in the objects is logged)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest

from dataops.core.settings import Settings
from registry.loader import load_registry
from source_systems.product import EVENTS_DIR, collector
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate
from tests.conftest import TINY_START
from tests.source_systems.helpers import product_lines, sqlite_rows

pytestmark = pytest.mark.xdist_group("tiny")

PRODUCT_KINDS = {
    "duplicate_delivery",
    "late_delivery",
    "clock_skew",
    "out_of_order_hour",
    "property_added",
    "event_renamed",
    "pii_in_property",
    "bot_traffic",
    "health_check",
    "malformed_line",
    "truncated_object",
}
EXCLUDED = re.compile("|".join(map(re.escape, load_registry().usage.excluded_user_agent_patterns)), re.IGNORECASE)


@pytest.fixture(scope="module")
def lines(tiny_sources: Path) -> pl.DataFrame:
    return product_lines(tiny_sources).with_columns(
        corrected=pl.col("received_at") - (pl.col("sent_at") - pl.col("occurred_at")),
        excluded=pl.col("user_agent").map_elements(lambda a: bool(EXCLUDED.search(a)), return_dtype=pl.Boolean),
    )


@pytest.fixture(scope="module")
def events(lines: pl.DataFrame) -> pl.DataFrame:
    """Each event once, from the first copy received that parses."""
    return lines.filter("ok").sort("received_at", "object", "line").unique("event_id", keep="first")


@pytest.fixture(scope="module")
def dirt(tiny_sources: Path) -> pl.DataFrame:
    return pl.read_parquet(tiny_sources / "truth" / "dirt_log.parquet").filter(pl.col("system") == "product")


LAST_DAY = 79  # of the tiny simulation (tests/conftest.py)


def _keys(dirt: pl.DataFrame, kind: str, before: int = LAST_DAY + 1) -> set[str]:
    """Keys of a kind logged before a day (index): what is logged near the end may not be delivered yet."""
    return set(dirt.filter((pl.col("kind") == kind) & (pl.col("day") < before))["key"])


def _cut_events(lines: pl.DataFrame) -> pl.Series:
    """Ids of the events whose line was cut off at an object's end (delivered again, complete, later)."""
    return lines.filter(~pl.col("ok"))["text"].str.extract(r'"event_id":"([0-9a-f]{32})"', 1).drop_nulls()


def test_settings_and_the_simulator_agree_on_where_events_go(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    assert settings.product_events == settings.sources_dir.joinpath(*EVENTS_DIR)


def test_volume_follows_the_scale_and_the_week(tiny_sources: Path, events: pl.DataFrame) -> None:
    real = events.filter(~pl.col("excluded") & pl.col("user_id").is_not_null())
    per_day = real.group_by(pl.col("corrected").dt.date().alias("day")).len()
    weekday = per_day.filter(pl.col("day").dt.weekday() <= 5)["len"].mean()
    weekend = per_day.filter(pl.col("day").dt.weekday() > 5)["len"].mean()
    # about 100,000 events a day at scale 1 (a weekly mean), so about 5,000 at the tiny scale of 0.05
    weekly = (5 * weekday + 2 * weekend) / 7  # type: ignore[operator]
    assert 2_000 < weekly < 12_000
    assert weekend < 0.3 * weekday  # type: ignore[operator]
    hours = real.group_by(pl.col("corrected").dt.hour().alias("hour")).len()
    night = hours.filter(pl.col("hour").is_in([1, 2, 3]))["len"].sum()
    busy = hours.filter(pl.col("hour").is_in([13, 14, 15]))["len"].sum()
    assert busy > 3 * night  # working hours in the accounts' countries


def test_a_few_power_users_and_many_occasional_ones(events: pl.DataFrame) -> None:
    real = events.filter(~pl.col("excluded") & pl.col("user_id").is_not_null())
    per_user = (
        real.group_by("user_id")
        .agg(events=pl.len(), days=pl.col("corrected").dt.date().n_unique())
        .sort("events", descending=True)
    )
    top = per_user.head(max(1, per_user.height // 10))["events"].sum()
    assert top > 0.35 * per_user["events"].sum()  # the busiest tenth does over a third of everything
    span = real["corrected"].dt.date().n_unique()
    assert per_user["days"].median() < 0.5 * span  # most users come on fewer than half the days  # type: ignore[operator]


def test_every_hour_has_an_object_per_collector_and_a_manifest_that_describes_them(tiny_sources: Path) -> None:
    root = tiny_sources.joinpath(*EVENTS_DIR)
    hours = sorted(p for p in root.glob("date=*/hour=*") if p.is_dir())
    assert len(hours) >= 24 * 79  # the last day's delayed hour may still be on its way
    for hour in hours:
        manifest_path = hour / "manifest.json"
        if not manifest_path.exists():
            continue  # an hour whose delayed object arrives after the simulated days
        manifest = json.loads(manifest_path.read_text())
        assert manifest["date"] == hour.parent.name.removeprefix("date=")
        assert manifest["hour"] == int(hour.name.removeprefix("hour="))
        assert sorted(o["collector"] for o in manifest["objects"]) == ["c1", "c2", "c3"]
        for entry in manifest["objects"]:
            blob = (hour / entry["name"]).read_bytes()
            assert entry["bytes"] == len(blob)
            assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
            body = gzip.decompress(blob)
            assert entry["lines"] == body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_the_manifest_is_written_last_and_every_file_aside_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[Path] = []
    real_atomic = collector._atomic

    def recording(path: Path, data: bytes) -> None:
        real_atomic(path, data)
        assert path.exists() and not path.with_name(f".{path.name}.tmp").exists()
        writes.append(path)

    monkeypatch.setattr(collector, "_atomic", recording)
    config = SimConfig(seed=3, scale=0.02, start=TINY_START, dirt=DirtRates(event_delayed_hour=1.0))
    simulate(tmp_path, TINY_START + dt.timedelta(days=3), config)
    manifests = [i for i, p in enumerate(writes) if p.name == "manifest.json"]
    hours = {writes[i].parent.relative_to(tmp_path).as_posix() for i in manifests}
    last = (TINY_START + dt.timedelta(days=3)).isoformat()
    # every hour, but the last day's last one and its delayed one, which arrive the next day
    assert len(hours) == len(manifests) >= 4 * 24 - 2
    assert {f"{last}/hour=23", f"{last}/hour=22"} & {h.removeprefix("product/events/date=") for h in hours} <= {
        f"{last}/hour=22"
    }
    for i in manifests:
        folder = writes[i].parent
        objects = [j for j, p in enumerate(writes) if p.parent == folder and p.name != "manifest.json"]
        assert len({writes[j].name for j in objects}) == 3
        assert max(objects) < i


def test_lines_are_in_order_of_receipt_within_their_hour(lines: pl.DataFrame) -> None:
    ok = lines.filter("ok").with_columns(
        folder=pl.col("object").str.extract(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d\d)", 1),
        hour=pl.col("object").str.extract(r"hour=(\d\d)", 1).cast(pl.Int32),
    )
    assert (ok["received_at"].dt.date().cast(pl.String) == ok["folder"]).all()
    assert (ok["received_at"].dt.hour().cast(pl.Int32) == ok["hour"]).all()
    out_of_order = ok.sort("object", "line").with_columns(
        back=pl.col("received_at") < pl.col("received_at").shift(1).over("object")
    )
    assert not out_of_order["back"].any()


def test_every_event_carries_the_fields_a_collector_gives(lines: pl.DataFrame) -> None:
    ok = lines.filter("ok")
    assert ok["event_id"].str.contains(r"^[0-9a-f]{32}$").all()
    for column in ("event_type", "occurred_at", "sent_at", "received_at", "properties"):
        assert ok[column].null_count() == 0, column
    signed_out = ok.filter(pl.col("user_id").is_null())
    assert signed_out["device_id"].null_count() == 0  # before sign-in an event has its device only
    assert ok.filter(pl.col("device_id").is_null())["platform"].unique().to_list() == ["server"]
    anonymous = signed_out.filter(~pl.col("excluded"))
    assert anonymous.height > 0 and anonymous["device_id"].str.starts_with("w-").all()


def test_every_kind_of_dirt_is_logged(dirt: pl.DataFrame) -> None:
    assert set(dirt["kind"]) == PRODUCT_KINDS
    bogus = {"bot_traffic", "health_check", "malformed_line", "truncated_object"}
    assert set(dirt.filter(pl.col("class") == "bogus")["kind"]) == bogus


def test_duplicates_are_the_same_event_again_hours_later(lines: pl.DataFrame, dirt: pl.DataFrame) -> None:
    copies = (
        lines.filter("ok")
        .group_by("event_id")
        .agg(n=pl.len(), spread=pl.col("received_at").max() - pl.col("received_at").min())
    )
    again = copies.filter(pl.col("n") > 1)
    logged = dirt.filter(pl.col("kind") == "duplicate_delivery").group_by("key").agg(pl.len(), pl.col("day").max())
    # a copy sent again in the last two days may not have arrived yet
    arrived = logged.filter(pl.col("day") < LAST_DAY - 1)
    seen = dict(zip(again["event_id"], again["n"] - 1, strict=True))
    assert dict(zip(arrived["key"], arrived["len"], strict=True)).items() <= seen.items()
    assert set(seen) <= set(logged["key"])
    assert (again["spread"] >= dt.timedelta(hours=1)).all()


def test_late_events_were_sent_when_their_device_came_back_online(
    lines: pl.DataFrame, events: pl.DataFrame, dirt: pl.DataFrame
) -> None:
    late = _keys(dirt, "late_delivery")
    first = events.filter(~pl.col("event_id").is_in(_cut_events(lines).implode())).with_columns(
        waited=pl.col("sent_at") - pl.col("occurred_at"), logged=pl.col("event_id").is_in(late)
    )
    assert first.filter("logged")["platform"].is_in(["ios", "android"]).all()
    assert first.filter("logged")["waited"].median() > dt.timedelta(hours=1)  # type: ignore[operator]
    assert (first.filter(~pl.col("logged"))["waited"] <= dt.timedelta(seconds=10)).all()
    assert (first["received_at"] - first["corrected"]).max() <= dt.timedelta(hours=72)  # type: ignore[operator]
    assert first["logged"].sum() == len(late & set(first["event_id"]))
    assert len(_keys(dirt, "late_delivery", LAST_DAY - 3) - set(events["event_id"])) == 0  # all arrive in 72 h


def test_skewed_clocks_are_the_logged_ones(events: pl.DataFrame, dirt: pl.DataFrame) -> None:
    skewed = _keys(dirt, "clock_skew")
    off = events.with_columns(off=(pl.col("occurred_at") - pl.col("corrected")).abs())
    assert (off.filter(pl.col("event_id").is_in(skewed))["off"] > dt.timedelta(seconds=50)).all()
    assert (off.filter(~pl.col("event_id").is_in(skewed))["off"] < dt.timedelta(seconds=4)).all()
    assert off.filter(pl.col("event_id").is_in(skewed))["off"].max() > dt.timedelta(minutes=30)  # type: ignore[operator]


def test_bots_and_health_checks_are_the_logged_ones(events: pl.DataFrame, dirt: pl.DataFrame) -> None:
    logged = _keys(dirt, "bot_traffic", LAST_DAY) | _keys(dirt, "health_check", LAST_DAY)
    assert set(events.filter("excluded")["event_id"]) >= logged
    assert set(events.filter("excluded")["event_id"]) <= _keys(dirt, "bot_traffic") | _keys(dirt, "health_check")
    assert _keys(dirt, "bot_traffic") and _keys(dirt, "health_check")


def test_unreadable_lines_are_the_logged_malformed_and_truncated_ones(
    lines: pl.DataFrame, events: pl.DataFrame, dirt: pl.DataFrame
) -> None:
    bad = lines.filter(~pl.col("ok")).with_columns(key=pl.col("object") + ":" + pl.col("line").cast(pl.String))
    truncated, malformed = _keys(dirt, "truncated_object"), _keys(dirt, "malformed_line")
    assert set(bad["key"]) == truncated | malformed
    assert not truncated & malformed
    cut = bad.filter(pl.col("key").is_in(truncated))
    assert cut["last"].all() and not cut["ends_with_newline"].any()
    # the cut event arrives again, complete, within hours (those of the last day may still be on their way)
    early = cut.filter(
        pl.col("object").str.extract(r"date=([\d-]+)", 1) < (TINY_START + dt.timedelta(days=LAST_DAY)).isoformat()
    )
    ids = early["text"].str.extract(r'"event_id":"([0-9a-f]{32})"', 1).drop_nulls()
    assert ids.len() > 0 and ids.is_in(events["event_id"].implode()).all()


def test_an_out_of_order_hour_is_delivered_after_later_hours(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    root = tiny_sources.joinpath(*EVENTS_DIR)
    late = set()
    for manifest in root.rglob("manifest.json"):
        data = json.loads(manifest.read_text())
        hour_end = dt.datetime.fromisoformat(data["date"]) + dt.timedelta(hours=data["hour"] + 1)
        if dt.datetime.fromisoformat(data["delivered_at"].removesuffix("Z")) > hour_end + dt.timedelta(hours=1):
            late.add(f"date={data['date']}/hour={data['hour']:02d}")
    logged = dirt.filter(pl.col("kind") == "out_of_order_hour")["key"].str.extract(r"^(date=[^/]+/hour=\d\d)", 1)
    last_day = (TINY_START + dt.timedelta(days=79)).isoformat()
    assert late == {k for k in logged if last_day not in k}  # the last day's is still on its way
    assert late


def test_schema_evolution_from_its_dates(lines: pl.DataFrame, events: pl.DataFrame, dirt: pl.DataFrame) -> None:
    config = SimConfig(start=TINY_START)
    added, renamed = config.effective_property_date, config.effective_rename_date
    pages = events.filter(
        (pl.col("event_type") == "page.viewed") & ~pl.col("excluded") & pl.col("user_id").is_not_null()
    ).with_columns(has=pl.col("properties").str.contains('"load_ms"'), day=pl.col("corrected").dt.date())
    assert not pages.filter(pl.col("day") < added)["has"].any()
    assert pages.filter(pl.col("day") >= added)["has"].all()
    exports = events.filter(pl.col("event_type").is_in(["report.exported", "report.downloaded"])).with_columns(
        day=pl.col("corrected").dt.date()
    )
    assert (exports.filter(pl.col("event_type") == "report.downloaded")["day"] >= renamed).all()
    assert (exports.filter(pl.col("event_type") == "report.exported")["day"] < renamed).all()
    schema = dirt.filter(pl.col("kind").is_in(["property_added", "event_renamed"]))
    days = {k: TINY_START + dt.timedelta(days=d) for k, d in schema.select("kind", "day").iter_rows()}
    assert days == {"property_added": added, "event_renamed": renamed}


def test_personal_data_typed_into_free_text_is_logged(events: pl.DataFrame, dirt: pl.DataFrame) -> None:
    typed = events.filter(pl.col("properties").str.contains("@"))
    assert set(typed["event_id"]) == _keys(dirt, "pii_in_property")
    assert typed["event_type"].is_in(["search.performed", "comment.added"]).all()


def test_users_are_crm_contacts_on_their_own_accounts(tiny_sources: Path, events: pl.DataFrame) -> None:
    contacts = sqlite_rows(tiny_sources / "crm" / "crm.sqlite", "contacts").select("Id", "AccountId")
    real = events.filter(~pl.col("excluded") & pl.col("user_id").is_not_null())
    joined = real.join(contacts, left_on="user_id", right_on="Id", how="left")
    assert joined["AccountId"].null_count() == 0
    assert (joined["AccountId"] == joined["account_ref"]).all()
