"""The usage truth equals what a careful reader of the delivered objects counts, day by day and as known
each day, and follows the business: no use while paused, use again after a win-back.

The reader here is independent of the simulator: it sees only the objects the manifests list and the CRM,
and applies the registry's usage definitions (dedup by event_id from the first copy received, corrected
event time, user agents excluded, anonymous devices stitched, renamed events under their former name)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from registry.loader import load_registry
from source_systems.product import catalog
from tests.conftest import TINY_DAYS, TINY_START
from tests.source_systems.helpers import product_lines, sqlite_rows

pytestmark = pytest.mark.xdist_group("tiny")

REGISTRY = load_registry()
USAGE = REGISTRY.usage
EXCLUDED = re.compile("|".join(map(re.escape, USAGE.excluded_user_agent_patterns)), re.IGNORECASE)
ALIASES = {new: catalog.EVENT_TYPES[code] for code, new in catalog.RENAMED.items()}


@pytest.fixture(scope="module")
def delivered(tiny_sources: Path) -> pl.DataFrame:
    lines = product_lines(tiny_sources).filter("ok")
    return lines.with_columns(
        corrected=pl.col("received_at") - (pl.col("sent_at") - pl.col("occurred_at")),
        excluded=pl.col("user_agent").map_elements(lambda a: bool(EXCLUDED.search(a)), return_dtype=pl.Boolean),
        event_type=pl.col("event_type").replace(ALIASES),
    )


@pytest.fixture(scope="module")
def customer_of(tiny_sources: Path) -> pl.DataFrame:
    """user_id -> customer_key: the contact's account, up its hierarchy to the ultimate parent."""
    accounts = sqlite_rows(tiny_sources / "crm" / "crm.sqlite", "accounts").select("Id", "ParentId")
    parent = dict(zip(accounts["Id"], accounts["ParentId"], strict=True))

    def top(account: str) -> str:
        while parent.get(account):
            account = parent[account]
        return account

    contacts = sqlite_rows(tiny_sources / "crm" / "crm.sqlite", "contacts").select("Id", "AccountId")
    return contacts.select(user_id="Id", customer_key=pl.col("AccountId").map_elements(top, return_dtype=pl.String))


def _usage(delivered: pl.DataFrame, known_by: dt.date | None = None) -> pl.DataFrame:
    """Usage events, one per event_id, with the user they count for and their day."""
    lines = delivered if known_by is None else delivered.filter(pl.col("delivered") <= known_by)
    first = lines.sort("received_at", "object", "line").unique("event_id", keep="first", maintain_order=True)
    first = first.filter(~pl.col("excluded"))
    devices = (
        first.filter(pl.col("user_id").is_not_null() & pl.col("device_id").is_not_null())
        .sort("received_at")
        .group_by("device_id")
        .agg(device_user=pl.col("user_id").first())
    )
    seats = [USAGE.seat_assigned, USAGE.seat_revoked]
    return (
        first.join(devices, on="device_id", how="left")
        .with_columns(user=pl.coalesce("user_id", "device_user"), day=pl.col("corrected").dt.date())
        .filter(pl.col("user").is_not_null())
        .with_columns(is_seat=pl.col("event_type").is_in(seats))
    )


def _truth(tiny_sources: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(tiny_sources / "truth" / f"{name}.parquet")


def _series(kpis: pl.DataFrame, kpi: str) -> dict[dt.date, Decimal]:
    rows = kpis.filter(pl.col("kpi") == kpi)
    return dict(zip(rows["date"], rows["value"], strict=True))


def _window(per_day: pl.DataFrame, key: str, days: int, dates: list[dt.date]) -> dict[dt.date, int]:
    """Distinct ``key`` with a row in the ``days`` days ending at each date."""
    return {
        d: per_day.filter((pl.col("day") <= d) & (pl.col("day") > d - dt.timedelta(days=days)))[key].n_unique()
        for d in dates
    }


def _cents(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_usage_kpis_equal_an_independent_count_of_the_delivered_events(
    tiny_sources: Path, delivered: pl.DataFrame, customer_of: pl.DataFrame
) -> None:
    usage = _usage(delivered).join(customer_of, left_on="user", right_on="user_id", how="left")
    assert usage["customer_key"].null_count() == 0  # every user is a CRM contact
    kpis = _truth(tiny_sources, "usage_kpi_daily")
    dates = [TINY_START + dt.timedelta(days=i) for i in range(TINY_DAYS)]
    events = usage.filter(~pl.col("is_seat"))
    count = dict(events.group_by("day").len().iter_rows())
    users = dict(events.group_by("day").agg(pl.col("user").n_unique()).iter_rows())
    assert _series(kpis, "usage_events") == {d: Decimal(count.get(d, 0)).quantize(Decimal("0.01")) for d in dates}
    assert _series(kpis, "daily_active_users") == {d: _cents(users.get(d, 0)) for d in dates}
    for kpi, days in (("weekly_active_users", USAGE.weekly_days), ("monthly_active_users", USAGE.monthly_days)):
        assert _series(kpis, kpi) == {d: _cents(v) for d, v in _window(events, "user", days, dates).items()}
    active = _window(events, "customer_key", USAGE.monthly_days, dates)
    assert _series(kpis, "usage_active_customers") == {d: _cents(v) for d, v in active.items()}
    for feature, types in USAGE.features:
        using = _window(events.filter(pl.col("event_type").is_in(types)), "customer_key", 28, dates)
        expected = {d: _cents(round(100 * using[d] / active[d] + 1e-9, 2) if active[d] else 0) for d in dates}
        assert _series(kpis, f"feature_adoption_{feature}") == expected, feature
    seat = usage.filter("is_seat").with_columns(
        delta=pl.when(pl.col("event_type") == USAGE.seat_assigned).then(1).otherwise(-1)
    )
    seats = {d: seat.filter(pl.col("day") <= d)["delta"].sum() for d in dates}
    assert min(seats.values()) > 0
    per_seat = {d: _cents(round(count.get(d, 0) / seats[d] + 1e-9, 2)) for d in dates}
    assert _series(kpis, "usage_per_seat") == per_seat


def test_each_days_usage_as_known_then_is_what_had_been_delivered(tiny_sources: Path, delivered: pl.DataFrame) -> None:
    history = _truth(tiny_sources, "usage_kpi_daily_history")
    restated = 0
    for known_at in [TINY_START + dt.timedelta(days=i) for i in range(3, TINY_DAYS, 4)]:
        events = _usage(delivered, known_at).filter(~pl.col("is_seat"))
        as_known = (
            history.filter((pl.col("known_at") <= known_at) & (pl.col("date") > known_at - dt.timedelta(days=4)))
            .sort("known_at")
            .group_by("date", "kpi")
            .agg(pl.col("value").last())
        )
        for kpi, expected in (
            ("usage_events", dict(events.group_by("day").len().iter_rows())),
            ("daily_active_users", dict(events.group_by("day").agg(pl.col("user").n_unique()).iter_rows())),
        ):
            truth = _series(as_known, kpi)
            assert truth == {d: _cents(expected.get(d, 0)) for d in truth}, (known_at, kpi)
        final = _series(_truth(tiny_sources, "usage_kpi_daily"), "usage_events")
        restated += sum(1 for d, v in _series(as_known, "usage_events").items() if v != final[d])
    assert restated > 0  # late events did change days already published


def test_late_events_restate_only_the_days_within_the_horizon(tiny_sources: Path) -> None:
    history = _truth(tiny_sources, "usage_kpi_daily_history")
    late = history.filter(pl.col("known_at") > pl.col("date"))
    assert late.height > 0
    assert (late["known_at"] - late["date"]).max() <= dt.timedelta(days=USAGE.late_arrival_days)  # type: ignore[operator]
    latest = history.sort("known_at").group_by("date", "kpi").agg(pl.col("value").last())
    daily = _truth(tiny_sources, "usage_kpi_daily")
    joined = daily.join(latest, on=["date", "kpi"], suffix="_history")
    assert joined.height == daily.height == TINY_DAYS * len(REGISTRY.usage_kpi_names)
    assert (joined["value"] == joined["value_history"]).all()


def test_usage_per_user_account_and_customer_add_up(tiny_sources: Path) -> None:
    users = _truth(tiny_sources, "usage_users_daily")
    accounts = _truth(tiny_sources, "usage_accounts_daily")
    customers = _truth(tiny_sources, "usage_customers_daily")
    kpis = _truth(tiny_sources, "usage_kpi_daily")
    total = dict(users.group_by("date").agg(pl.col("events").sum()).iter_rows())
    assert {d: _cents(v) for d, v in total.items()} == {
        d: v for d, v in _series(kpis, "usage_events").items() if v != 0
    }
    by_account = users.group_by("date", "account_ref").agg(pl.len().alias("active_users"), pl.col("events").sum())
    assert by_account.sort("date", "account_ref").equals(
        accounts.select("date", "account_ref", "active_users", "events").sort("date", "account_ref"),
        null_equal=True,
    )
    by_customer = users.group_by("date", "customer_key").agg(pl.col("events").sum())
    check = by_customer.join(customers, on=["date", "customer_key"], how="left", suffix="_c")
    assert (check["events"] == check["events_c"]).all()


def test_no_use_while_paused_and_use_again_after_a_win_back(tiny_sources: Path) -> None:
    states = _truth(tiny_sources, "customer_states_daily")
    customers = _truth(tiny_sources, "usage_customers_daily").select("date", "customer_key", "events", "seats")
    daily = states.join(customers, on=["date", "customer_key"], how="left").with_columns(pl.col("events").fill_null(0))
    paused = daily.filter(pl.col("state") == "paused")
    assert paused.height > 0 and paused["events"].sum() == 0
    # the customers that paused did use the product while active
    paused_customers = paused["customer_key"].unique().implode()
    assert (
        daily.filter(pl.col("customer_key").is_in(paused_customers) & (pl.col("state") == "active"))["events"].sum() > 0
    )
    assert daily.filter(pl.col("state").is_in(["churned", "prospect"]))["events"].sum() == 0
    moves = daily.sort("customer_key", "date").with_columns(prev=pl.col("state").shift(1).over("customer_key"))
    won_back = moves.filter((pl.col("prev") == "churned") & (pl.col("state") == "active"))
    assert won_back.height > 0
    for key, day in won_back.select("customer_key", "date").iter_rows():
        after = daily.filter((pl.col("customer_key") == key) & (pl.col("date") > day))
        assert after["events"].sum() > 0, key


def test_sessions_equal_an_independent_sessionisation_of_the_delivered_events(
    tiny_sources: Path, delivered: pl.DataFrame
) -> None:
    """A user's usage events of a day in time order, a new session after a gap of more than the registry's
    session gap; per day the sessions, their users and their average and median length (half up)."""
    gap = dt.timedelta(minutes=USAGE.session_gap_minutes)
    events = _usage(delivered).filter(~pl.col("is_seat")).sort("user", "day", "corrected")
    expected = (
        events.with_columns(before=pl.col("corrected").shift(1).over("user", "day"))
        .with_columns(session=(pl.col("before").is_null() | (pl.col("corrected") - pl.col("before") > gap)).cum_sum())
        .group_by("session")
        .agg(
            user_id=pl.col("user").first(),
            date=pl.col("day").first(),
            session_start=pl.col("corrected").min(),
            session_end=pl.col("corrected").max(),
            events=pl.len(),
        )
        .select("date", "user_id", "session_start", "session_end", "events")
        .sort("user_id", "session_start")
    )
    truth = _truth(tiny_sources, "usage_sessions")
    got = truth.select(expected.columns).cast({"session_start": pl.Datetime("ms"), "session_end": pl.Datetime("ms")})
    assert got.equals(
        expected.cast({"session_start": pl.Datetime("ms"), "session_end": pl.Datetime("ms"), "events": pl.Int64})
    )
    assert (truth["length_ms"] == (truth["session_end"] - truth["session_start"]).dt.total_milliseconds()).all()
    # several sessions a day for some users, and sessions the gap rule joined from the simulated ones
    assert truth.group_by("date", "user_id").len()["len"].max() > 1  # type: ignore[operator]
    daily = _truth(tiny_sources, "usage_sessions_daily")
    for row in daily.iter_rows(named=True):
        lengths = sorted(truth.filter(pl.col("date") == row["date"])["length_ms"].to_list())
        k = len(lengths)
        median = (lengths[(k - 1) // 2] + lengths[k // 2]) / 2
        assert row["sessions"] == k
        assert row["avg_session_seconds"] == (Decimal(sum(lengths)) / k / 1000).quantize(
            Decimal("0.01"), "ROUND_HALF_UP"
        )
        assert row["median_session_seconds"] == (Decimal(median) / 1000).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    assert daily.height == TINY_DAYS and daily["sessions"].sum() == truth.height
