"""The registry's churn-risk rule: a CRM task for the account owner when a customer enters the high band,
once per episode and never twice, judged by the CRM mock's own log of tasks."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.egress.churn_tasks import open_band_tasks, read_episodes
from dataops.egress.reverse_etl import sync_db_path
from source_systems.crm import store
from source_systems.crm.server import RunningServer, start_in_thread

DAY = dt.date(2025, 6, 2)
ACCOUNTS = {"001A": "Acme", "001B": "Beta"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(tmp_path)
    with closing(store.connect(settings.crm_db)) as conn, conn:
        for account_id, name in ACCOUNTS.items():
            conn.execute(
                "insert into accounts (Id, Name, CreatedDate, LastModifiedDate, SystemModstamp) values (?, ?, ?, ?, ?)",
                (account_id, name, "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            )
    settings.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("""
            create schema publish; create schema marts;
            create table publish.publish_log (publish_id varchar, published_at timestamptz, as_of_date date);
            create table marts.dim_customer_hierarchy (
                entity_id varchar, entity_type varchar, entity_name varchar, customer_id varchar);
            create table marts.customer_churn_risk (
                customer_id varchar, score_date date, churn_probability double, risk_band varchar,
                top_reasons varchar, model_version varchar);
        """)
        for account_id, name in ACCOUNTS.items():
            conn.execute(
                "insert into marts.dim_customer_hierarchy values (?, 'crm_account', ?, ?)",
                [account_id, name, account_id],
            )
    return settings


@pytest.fixture
def crm(settings: Settings) -> Iterator[RunningServer]:
    with start_in_thread(settings.crm_db) as server:
        yield server


def publish(settings: Settings, day: dt.date, bands: dict[str, str]) -> None:
    """A publish as of ``day`` whose scores put each customer in the given band."""
    probability = {"high": 0.7, "medium": 0.2, "low": 0.01}
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("insert into publish.publish_log values (?, now(), ?)", [f"p{day}", day])
        for customer, band in bands.items():
            conn.execute(
                "insert into marts.customer_churn_risk values (?, ?, ?, ?, 'delinquent; late_invoices_180d', 'v1')",
                [customer, day, probability[band], band],
            )


def crm_tasks(settings: Settings) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(settings.crm_db)) as conn:
        return conn.execute("select AccountId, Subject, ActivityDate from tasks order by CreatedDate, Id").fetchall()


def run(settings: Settings, crm: RunningServer) -> list[str]:
    [report] = open_band_tasks(settings, crm.url, crm.token)
    return report.opened


def test_entering_the_high_band_opens_one_task_per_episode(settings: Settings, crm: RunningServer) -> None:
    publish(settings, DAY, {"001A": "high", "001B": "low"})
    assert run(settings, crm) == ["001A"]
    assert crm_tasks(settings) == [("001A", "Churn risk high: Acme", "2025-06-09")]
    assert run(settings, crm) == []  # the same publish again: nothing new

    publish(settings, DAY + dt.timedelta(days=1), {"001A": "high", "001B": "high"})
    assert run(settings, crm) == ["001B"]  # 001A stays in its episode: no second task

    publish(settings, DAY + dt.timedelta(days=2), {"001A": "medium", "001B": "high"})
    assert run(settings, crm) == []  # 001A leaves the band: its episode ends
    publish(settings, DAY + dt.timedelta(days=3), {"001A": "high", "001B": "high"})
    assert run(settings, crm) == ["001A"]  # a new episode, a new task

    assert [t[0] for t in crm_tasks(settings)] == ["001A", "001B", "001A"]
    episodes = [(e["customer_id"], e["entered_on"], e["left_on"]) for e in read_episodes(settings)]
    assert episodes == [
        ("001A", "2025-06-02", "2025-06-04"),
        ("001B", "2025-06-03", None),
        ("001A", "2025-06-05", None),
    ]


def test_a_task_whose_answer_was_lost_is_not_opened_twice(settings: Settings, crm: RunningServer) -> None:
    publish(settings, DAY, {"001A": "high"})
    assert run(settings, crm) == ["001A"]
    # the CRM created the task, but the run died before recording it: the next run asks again
    with closing(sqlite3.connect(sync_db_path(settings))) as state, state:
        state.execute("delete from churn_band_episodes")
        state.execute("delete from churn_task_runs")
    assert run(settings, crm) == ["001A"]
    assert len(crm_tasks(settings)) == 1  # the same idempotency key: the CRM returned the first task


def test_nothing_happens_before_scores_are_published(tmp_path: Path) -> None:
    [report] = open_band_tasks(Settings(tmp_path), "http://127.0.0.1:9", "token")
    assert report.skipped == "no churn scores published yet" and report.opened == []
