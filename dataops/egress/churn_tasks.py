"""The churn-risk rule in action: a CRM task for the account owner when a customer enters a band.

The rule lives in the registry (registry/churn_risk.yaml ``actions``). An *episode* is the run of published
dates a customer spends in the band: the day it enters opens an episode and one task; staying in the band
opens nothing; leaving closes the episode, and entering again opens a new one with a new task. Episodes are
kept beside the CRM sync state (``churn_band_episodes`` in the same SQLite file), and each task carries an
idempotency key made of the action, the customer and the episode's first date: a task the CRM created
but whose answer was lost is asked for again with the same key and the CRM returns the first one, never
a second. An episode is recorded only once the CRM has answered, so a failed run is simply run again.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.egress.reverse_etl import CrmSyncError, sync_db_path
from dataops.ingest.connectors.crm import RetryPolicy, TransientCrmError, retrying_policy, send
from registry.churn_risk import BandAction, ChurnRiskRules, load_churn_risk

SCHEMA = """
create table if not exists churn_band_episodes (
    action text not null, customer_id text not null, account_id text not null, entered_on text not null,
    left_on text, task_id text not null, idempotency_key text not null, probability real,
    primary key (action, customer_id, entered_on));
create table if not exists churn_task_runs (action text primary key, last_as_of text not null);
"""
# The customers in each band on the latest published date, with the CRM account their tasks go to (the
# ultimate parent's own account: ERP-only customers have none and get no task).
IN_BAND_SQL = """
select risk.customer_id, accounts.entity_id as account_id, accounts.entity_name as account_name,
       risk.churn_probability, coalesce(risk.top_reasons, '') as top_reasons
from marts.customer_churn_risk as risk
inner join marts.dim_customer_hierarchy as accounts
    on accounts.entity_id = risk.customer_id and accounts.entity_type = 'crm_account'
where risk.score_date = $as_of and risk.risk_band = $band
order by 1
"""


@dataclass
class TaskReport:
    as_of: dt.date | None
    opened: list[str] = field(default_factory=list)  # customers whose new episode opened a task
    closed: list[str] = field(default_factory=list)  # customers whose episode ended
    skipped: str | None = None  # why nothing was done


def _published(
    settings: Settings, limits: Limits | None
) -> tuple[dt.date | None, dict[str, list[tuple[Any, ...]]], ChurnRiskRules]:
    rules = load_churn_risk()
    path = settings.analytics_db
    if not path.exists():
        return None, {}, rules
    with connect(path, read_only=True, limits=limits) as conn:
        latest = conn.execute("select max(as_of_date) from publish.publish_log").fetchone()
        has_scores = conn.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'customer_churn_risk'"
        ).fetchone()
        if not latest or latest[0] is None or not has_scores or not has_scores[0]:
            return None, {}, rules
        as_of = latest[0]
        bands = {a.band: conn.execute(IN_BAND_SQL, {"as_of": as_of, "band": a.band}).fetchall() for a in rules.actions}
    return as_of, bands, rules


def _state(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma busy_timeout=30000")
    conn.executescript(SCHEMA)
    return conn


def open_band_tasks(
    settings: Settings, base_url: str, token: str, policy: RetryPolicy | None = None, limits: Limits | None = None
) -> list[TaskReport]:
    """Apply every band action of the registry to the latest published scores; one report per action. ``limits``:
    the DuckDB limits the analyst file is read under (:func:`dataops.publish.status.platform_status`)."""
    as_of, bands, rules = _published(settings, limits)
    if as_of is None:
        return [TaskReport(None, skipped="no churn scores published yet") for _ in rules.actions]
    policy = policy or RetryPolicy()
    reports = []
    with (
        closing(_state(sync_db_path(settings))) as state,
        httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=policy.timeout
        ) as http,
    ):
        for action in rules.actions:
            reports.append(_apply(state, http, policy, action, as_of, bands[action.band]))
    return reports


def _apply(
    state: sqlite3.Connection,
    http: httpx.Client,
    policy: RetryPolicy,
    action: BandAction,
    as_of: dt.date,
    in_band: list[tuple[Any, ...]],
) -> TaskReport:
    report = TaskReport(as_of)
    last = state.execute("select last_as_of from churn_task_runs where action = ?", (action.name,)).fetchone()
    if last is not None and dt.date.fromisoformat(last[0]) >= as_of:
        report.skipped = f"{action.name} already applied to {last[0]}"  # a re-run or an older publish
        return report
    open_now = {
        row[0]: row[1]
        for row in state.execute(
            "select customer_id, entered_on from churn_band_episodes where action = ? and left_on is null",
            (action.name,),
        )
    }
    current = {str(row[0]): row for row in in_band}
    for customer_id in sorted(set(open_now) - set(current)):
        state.execute(
            "update churn_band_episodes set left_on = ? where action = ? and customer_id = ? and left_on is null",
            (as_of.isoformat(), action.name, customer_id),
        )
        report.closed.append(customer_id)
    for customer_id in sorted(set(current) - set(open_now)):
        _, account_id, account_name, probability, reasons = current[customer_id]
        key = f"{action.name}:{customer_id}:{as_of.isoformat()}"
        values = {
            "account_name": account_name,
            "score_date": as_of.isoformat(),
            "probability": f"{probability:.0%}",
            "top_reasons": reasons or "none given",
        }
        task_id = _create_task(
            http,
            policy,
            key,
            {
                "AccountId": account_id,
                "Subject": action.subject.format(**values),
                "Description": action.description.format(**values),
                "ActivityDate": (as_of + dt.timedelta(days=action.due_in_days)).isoformat(),
            },
        )
        state.execute(
            "insert into churn_band_episodes (action, customer_id, account_id, entered_on, task_id, idempotency_key, "
            "probability) values (?, ?, ?, ?, ?, ?, ?)",
            (action.name, customer_id, account_id, as_of.isoformat(), task_id, key, probability),
        )
        report.opened.append(customer_id)
    state.execute(
        "insert into churn_task_runs (action, last_as_of) values (?, ?) "
        "on conflict (action) do update set last_as_of = excluded.last_as_of",
        (action.name, as_of.isoformat()),
    )
    return report


def _create_task(http: httpx.Client, policy: RetryPolicy, key: str, body: dict[str, Any]) -> str:
    try:
        for attempt in retrying_policy(policy):
            with attempt:
                resp = send(http, policy, "POST", "/api/v1/tasks", json=body, headers={"Idempotency-Key": key})
                if resp.status_code >= 400:
                    raise CrmSyncError(f"the CRM refused the task {key}: {resp.status_code} {resp.text[:300]}")
                return str(resp.json()["id"])
    except TransientCrmError as exc:
        raise CrmSyncError(f"the CRM task {key} failed after {policy.max_attempts} attempts: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def read_episodes(settings: Settings) -> list[dict[str, Any]]:
    """Every episode, oldest first (none before the first run)."""
    path = sync_db_path(settings)
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("select * from churn_band_episodes order by entered_on, customer_id").fetchall()
        except sqlite3.OperationalError:
            return []
        return [dict(r) for r in rows]
