"""Every contract and customer state transition occurs, in the ERP's history and in the truth."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.xdist_group("tiny")


def test_every_contract_transition_is_recorded_by_the_erp(tiny_sources: Path) -> None:
    with sqlite3.connect(tiny_sources / "erp" / "erp.sqlite") as conn:
        seen = set(conn.execute("select coalesce(from_status, ''), to_status from contract_status_history"))
    assert seen >= {
        ("", "signed"),
        ("signed", "live"),
        ("live", "paused"),
        ("paused", "live"),
        ("live", "cancellation_requested"),
        ("cancellation_requested", "ended"),
        ("paused", "ended"),
    }


def test_contract_rows_show_their_current_state(tiny_sources: Path) -> None:
    with sqlite3.connect(tiny_sources / "erp" / "erp.sqlite") as conn:
        mismatched = conn.execute(
            """select count(*) from contracts c
               join (select contract_no, to_status, max(history_id) over (partition by contract_no) as last_id,
                            history_id from contract_status_history) h
                 on h.contract_no = c.contract_no and h.history_id = h.last_id
               where c.status <> h.to_status"""
        ).fetchone()[0]
    assert mismatched == 0


def test_every_customer_state_transition_occurs_in_the_truth(tiny_sources: Path) -> None:
    states = pl.read_parquet(tiny_sources / "truth" / "customer_states_daily.parquet").sort("customer_key", "date")
    moves = (
        states.with_columns(prev=pl.col("state").shift(1).over("customer_key"))
        .filter(pl.col("prev") != pl.col("state"))
        .select("prev", "state")
        .unique()
    )
    seen = set(moves.iter_rows())
    assert seen >= {
        ("prospect", "onboarding"),
        ("onboarding", "active"),
        ("active", "paused"),
        ("paused", "active"),
        ("active", "churned"),
        ("paused", "churned"),
        ("churned", "active"),  # win-back
    }


def test_win_back_counts_as_a_new_customer(tiny_sources: Path) -> None:
    states = pl.read_parquet(tiny_sources / "truth" / "customer_states_daily.parquet").sort("customer_key", "date")
    win_back = states.with_columns(prev=pl.col("state").shift(1).over("customer_key")).filter(
        (pl.col("prev") == "churned") & (pl.col("state") == "active")
    )
    assert win_back.height >= 1
    kpis = pl.read_parquet(tiny_sources / "truth" / "kpi_daily.parquet")
    day = win_back["date"][0]
    new = kpis.filter((pl.col("date") == day) & (pl.col("kpi") == "new_customers"))["value"][0]
    assert new >= 1
