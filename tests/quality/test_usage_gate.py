"""The usage KPIs' gate checks (quality/usage.py through quality/gate.py's loaders) pass a day as the model
builds it and name each kind of bad row: an unknown KPI, stale definitions, a fractional or negative count, a
share above 100, a negative rate, active users that are not nested, a day missing a KPI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import duckdb
import pytest

from quality.gate import GATE, CheckOutcome, run_check
from registry.loader import Registry, load_registry

DAY = dt.date(2025, 3, 3)
VALUES = {
    "usage_events": 120,
    "daily_active_users": 9,
    "weekly_active_users": 14,
    "monthly_active_users": 20,
    "usage_active_customers": 4,
    "usage_per_seat": 2.5,
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@pytest.fixture
def warehouse(registry: Registry) -> Iterator[duckdb.DuckDBPyConnection]:
    """A good day: every registry usage KPI but the health score's, as kpi_usage_daily holds them."""
    values = {**VALUES, **{f"feature_adoption_{f}": 50.0 for f in registry.usage.feature_names}}
    with duckdb.connect() as conn:
        conn.execute("create schema kpis")
        conn.execute(
            "create table kpis.kpi_usage_daily "
            "(date_day date, kpi_name varchar, value decimal(38, 2), definition_version varchar)"
        )
        conn.executemany(
            "insert into kpis.kpi_usage_daily values (?, ?, ?, ?)",
            [(DAY, name, value, registry.version) for name, value in values.items()],
        )
        yield conn


def check(conn: duckdb.DuckDBPyConnection, registry: Registry, name: str) -> CheckOutcome:
    return run_check(next(c for c in GATE if c.name == name), conn, DAY, DAY, registry)


def set_value(conn: duckdb.DuckDBPyConnection, kpi: str, value: float) -> None:
    conn.execute("update kpis.kpi_usage_daily set value = ? where kpi_name = ?", [value, kpi])


def test_the_usage_checks_gate_the_usage_kpis() -> None:
    usage = [c for c in GATE if c.asset == ("kpis", "kpi_usage_daily")]
    assert [c.name for c in usage] == ["usage_kpi_values_valid", "usage_kpis_consistent"]


def test_a_day_as_the_model_builds_it_passes(warehouse: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    for name in ("usage_kpi_values_valid", "usage_kpis_consistent"):
        outcome = check(warehouse, registry, name)
        assert outcome.passed, outcome.summary()
        assert outcome.rows_checked > 0


@pytest.mark.parametrize(
    ("kpi", "value", "rule"),
    [
        ("weekly_active_users", 13.5, "counts_are_whole_and_not_negative"),
        ("usage_events", -1, "counts_are_whole_and_not_negative"),
        ("feature_adoption_reports", 100.01, "percentages_between_0_and_100"),
        ("usage_per_seat", -0.5, "rates_are_not_negative"),
    ],
)
def test_a_value_out_of_range_is_named(
    warehouse: duckdb.DuckDBPyConnection, registry: Registry, kpi: str, value: float, rule: str
) -> None:
    set_value(warehouse, kpi, value)
    outcome = check(warehouse, registry, "usage_kpi_values_valid")
    assert not outcome.passed and set(outcome.failed_checks) == {rule}
    assert outcome.failure_cases["kpi_name"].to_list() == [kpi]


def test_an_unknown_kpi_and_stale_definitions_fail(warehouse: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    warehouse.execute("insert into kpis.kpi_usage_daily values (?, 'sessions_per_user', 3, ?)", [DAY, registry.version])
    warehouse.execute("update kpis.kpi_usage_daily set definition_version = '0.0.1' where kpi_name = 'usage_events'")
    outcome = check(warehouse, registry, "usage_kpi_values_valid")
    assert outcome.failed_checks == {
        "usage_kpi_is_defined_in_the_registry": 1,
        "computed_with_the_current_definitions": 1,
    }
    assert sorted(outcome.failure_cases["kpi_name"]) == ["sessions_per_user", "usage_events"]


@pytest.mark.parametrize(
    ("kpi", "value", "rule"),
    [
        ("daily_active_users", 15, "active_users_nested_day_week_month"),
        ("monthly_active_users", 13, "active_users_nested_day_week_month"),
        ("usage_active_customers", 21, "active_customers_have_active_users"),
        ("usage_events", 8, "active_users_have_usage_events"),
    ],
)
def test_kpis_that_disagree_fail(
    warehouse: duckdb.DuckDBPyConnection, registry: Registry, kpi: str, value: float, rule: str
) -> None:
    set_value(warehouse, kpi, value)
    outcome = check(warehouse, registry, "usage_kpis_consistent")
    assert not outcome.passed and rule in outcome.failed_checks
    assert outcome.failure_cases["date_day"].to_list() == [DAY]


def test_a_day_missing_a_kpi_fails(warehouse: duckdb.DuckDBPyConnection, registry: Registry) -> None:
    warehouse.execute("delete from kpis.kpi_usage_daily where kpi_name = 'weekly_active_users'")
    outcome = check(warehouse, registry, "usage_kpis_consistent")
    assert not outcome.passed and any("not_nullable" in rule for rule in outcome.failed_checks), outcome.failed_checks
