"""The gate's pandera models catch what they are for, and name the offending rows."""

from __future__ import annotations

import datetime as dt

import polars as pl

from quality import kpis, marts
from quality.gate import validate

D1, D2 = dt.date(2025, 1, 1), dt.date(2025, 1, 2)


def states(*rows: tuple[str, dt.date, str, str, int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "customer_id": c,
                "date_day": d,
                "state": s,
                "previous_state": p,
                "is_delinquent": False,
                "live_contract_count": live,
                "paused_contract_count": paused,
            }
            for c, d, s, p, live, paused in rows
        ],
        schema_overrides={"live_contract_count": pl.Int64, "paused_contract_count": pl.Int64},
    )


def test_consistent_states_pass() -> None:
    good = states(
        ("A", D1, "onboarding", "prospect", 0, 0),
        ("A", D2, "active", "onboarding", 1, 0),
        ("B", D2, "churned", "paused", 0, 0),
    )
    assert validate("states", marts.CustomerStatesDaily, good).passed


def test_a_churned_customer_with_a_live_contract_is_named() -> None:
    bad = states(("A", D1, "active", "onboarding", 1, 0), ("Z", D2, "churned", "active", 2, 0))
    outcome = validate("states", marts.CustomerStatesDaily, bad)
    assert not outcome.passed and outcome.failing_rows == 1
    row = outcome.failure_cases.row(0, named=True)
    assert row["customer_id"] == "Z" and "churned_customer_has_no_live_or_paused_contract" in row["_rule"]


def test_a_duplicate_grain_and_an_impossible_transition_fail() -> None:
    bad = states(
        ("A", D1, "active", "onboarding", 1, 0),
        ("A", D1, "active", "onboarding", 1, 0),
        ("B", D1, "churned", "prospect", 0, 0),
    )
    outcome = validate("states", marts.CustomerStatesDaily, bad)
    rules = " ".join(outcome.failure_cases["_rule"].to_list())
    assert "state_changes_follow_the_lifecycle" in rules
    assert "unique" in " ".join(outcome.failed_checks) or "duplicate" in rules.lower()


def test_an_overpaid_invoice_fails_beyond_the_tolerance_only() -> None:
    frame = pl.DataFrame(
        {
            "invoice_id": ["I1", "I2", "I3"],
            "invoice_amount": [100.0, 100.0, 100.0],
            "settled_amount": [100.0, 100.01, 150.0],
            "tolerance": [0.01] * 3,
        }
    )
    outcome = validate("settlement", marts.InvoiceSettlement, frame)
    assert outcome.failure_cases["invoice_id"].to_list() == ["I3"]


def kpi_rows(values: dict[str, float], version: str = "1.0.0") -> pl.DataFrame:
    units = {"active_customers": "count", "revenue_usd": "USD", "mrr_usd": "USD"}
    return pl.DataFrame(
        [
            {
                "date_day": D1,
                "kpi_name": k,
                "value": v,
                "unit": units[k],
                "definition_version": version,
                "is_registry_kpi": True,
                "registry_version": "1.0.0",
            }
            for k, v in values.items()
        ]
    )


def test_kpi_values_in_range_pass_and_out_of_range_fail() -> None:
    assert validate("kpi", kpis.KpiDaily, kpi_rows({"active_customers": 3, "revenue_usd": -50.0})).passed
    bad = validate("kpi", kpis.KpiDaily, kpi_rows({"active_customers": 2.5, "mrr_usd": -1.0}))
    assert set(bad.failure_cases["kpi_name"]) == {"active_customers", "mrr_usd"}
    stale = validate("kpi", kpis.KpiDaily, kpi_rows({"active_customers": 3}, version="0.9.0"))
    assert "computed_with_the_current_definitions" in stale.failed_checks


def movement(value: float, previous: float, expected: bool = False) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date_day": [D2],
            "kpi_name": ["mrr_usd"],
            "value": [float(value)],
            "previous_value": [float(previous)],
            "max_change_pct": [100.0],
            "min_base": [50_000.0],
            "is_expected": [expected],
        }
    )


def test_an_implausible_jump_fails_unless_the_registry_expects_it() -> None:
    assert validate("moves", kpis.KpiMovements, movement(180_000, 100_000)).passed
    jump = validate("moves", kpis.KpiMovements, movement(900_000, 100_000))
    assert not jump.passed and jump.failure_cases["value"].to_list() == [900_000.0]
    assert validate("moves", kpis.KpiMovements, movement(900_000, 100_000, expected=True)).passed
    assert validate("moves", kpis.KpiMovements, movement(40_000, 4_000)).passed  # below the minimum base
