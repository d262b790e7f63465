"""Reverse ETL: write the enterprise's view of each customer back to its accounts in the CRM.

Every CRM account gets its ultimate parent's state, delinquent flag and MRR in USD as of the latest
published date, read from the analyst warehouse (the agreed, published numbers, never the build
warehouse mid-run). Only fields whose value changed since the last sync are sent: each account carries
just those fields, up to 200 accounts per ``PATCH /api/v1/accounts`` (the CRM's collection endpoint, one
result per account), so a first sync of thousands of accounts is a few dozen requests, not thousands.
From :data:`DEFAULT_BULK_FROM` accounts with changes (``CRM_SYNC_BULK_FROM`` sets another threshold), the
changes go through the CRM's asynchronous bulk update job instead (create, upload the records as one file,
close, poll, fetch one result per account: a handful of requests whatever the size, where the collection
endpoint costs one paced request per 200 accounts; docs/decisions/0079). Both paths send the same writes and
the CRM applies them with the same per-account semantics, so they leave the same CRM and the same state.

Sync state and the sync log live in a small SQLite file under the data directory
(:func:`sync_db_path`), not in DuckDB: the analyst file is read-only and the build warehouse belongs to
the pipeline's runs. The writes the CRM accepted are recorded (log rows and last-synced values, one SQLite
transaction per request) right after its answer. A sync that fails part-way therefore leaves every accepted
write recorded, and a re-run sends only what is still missing. A write the CRM applied but whose answer
was lost is simply sent again: the ``PATCH`` sets absolute values, so repeating it changes nothing, and
each account's write carries the same ``idempotency_key``. A bulk job's writes are recorded from its
per-account results once it completes; each request of a job is safe to repeat (the create carries the job's
``Idempotency-Key``, an upload replaces the previous one, closing a closed job answers its state), and a job
whose results were never read is sent again by the re-run as a new job, setting the same absolute values.

Transient failures (429 honouring ``Retry-After``, 5xx, timeouts) are retried by the CRM connector's
tenacity policy; after a bounded number of tries the sync fails naming the accounts. Requests are also
paced client-side, so that a long sync stays under the CRM's rate limit rather than leaning on 429s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.ingest.connectors.crm import RetryPolicy, TransientCrmError, retrying_policy, send
from registry.loader import Registry, load_registry

log = logging.getLogger(__name__)

STATE_FIELD = "Enterprise_State__c"
DELINQUENT_FIELD = "Enterprise_Delinquent__c"
MRR_FIELD = "Enterprise_MRR_USD__c"
CHURN_RISK_FIELD = "Enterprise_Churn_Risk__c"
CHURN_REASONS_FIELD = "Enterprise_Churn_Reasons__c"
FIELDS = (STATE_FIELD, DELINQUENT_FIELD, MRR_FIELD)  # every account's
CHURN_FIELDS = (CHURN_RISK_FIELD, CHURN_REASONS_FIELD)  # the accounts of customers scored on the date
DEFAULT_MAX_REQUESTS_PER_SECOND = 40.0  # the mock CRM allows 50/s; stay below rather than lean on 429s
DEFAULT_BATCH_SIZE = 200  # accounts per request: the most the CRM's collection endpoint takes
# From this many accounts with changes, a bulk update job rather than the collection endpoint (measured:
# docs/decisions/0079); CRM_SYNC_BULK_FROM overrides it.
DEFAULT_BULK_FROM = 2000
MAX_JOB_RECORDS = 100_000  # accounts per bulk update job: the most the CRM's job takes
JOB_POLL_SECONDS = 0.05  # the first wait before asking a job's state; doubled up to JOB_POLL_MAX_SECONDS
JOB_POLL_MAX_SECONDS = 1.0
JOB_TIMEOUT_SECONDS = 900.0  # a job not done by then fails the sync; the re-run sends its accounts again
T = TypeVar("T")

# Values are kept as canonical text (state name, "0"/"1", cents-exact decimal) so that comparing the
# desired value with the last-synced one is exact, with no float round trip.
ProgressCallback = Callable[[int, int], None]

SCHEMA = """
create table if not exists synced_values (
    account_id text not null, field text not null, value text, synced_at text not null, sync_id text not null,
    primary key (account_id, field));
create table if not exists sync_log (
    seq integer primary key autoincrement, sync_id text not null, account_id text not null, field text not null,
    old_value text, new_value text, synced_at text not null);
create index if not exists sync_log_account on sync_log (account_id, field);
create table if not exists sync_runs (
    sync_id text primary key, started_at text not null, finished_at text, status text not null,
    as_of_date text, publish_id text, accounts_considered integer, accounts_patched integer,
    fields_written integer, requests integer, retries integer, error text);
"""

# The enterprise view of every CRM account on the latest published date. MRR follows the mrr_usd KPI:
# contracts live that day, summed per customer and currency, each total converted at the day's rate and
# rounded to the cent (the to_usd macro), then added.
VIEW_SQL = """
with
accounts as (
    select entity_id as account_id, customer_id
    from marts.dim_customer_hierarchy
    where entity_type = 'crm_account'
),
states as (
    select customer_id, state, is_delinquent
    from marts.fct_customer_states_daily
    where date_day = $as_of
),
live as (
    select contracts.customer_id, contracts.currency_code, contracts.mrr_amount
    from marts.fct_contract_state_events as events
    inner join marts.fct_contracts as contracts on contracts.contract_id = events.contract_id
    where events.to_status in (select unnest($live_states::varchar[]))
      and events.changed_date <= $as_of
      and (events.valid_until_date is null or events.valid_until_date > $as_of)
),
per_currency as (
    select customer_id, currency_code, sum(mrr_amount) as amount
    from live
    group by 1, 2
),
mrr as (
    select
        per_currency.customer_id,
        sum(round(cast(per_currency.amount as decimal(38, 2)) * cast(rates.usd_per_unit as decimal(38, 6)), 2))
            as mrr_usd
    from per_currency
    inner join marts.fct_fx_rates as rates
        on rates.rate_date = $as_of and rates.currency_code = per_currency.currency_code
    group by 1
)
select
    accounts.account_id,
    states.state,
    states.is_delinquent,
    cast(coalesce(mrr.mrr_usd, 0) as decimal(38, 2)) as mrr_usd
from accounts
inner join states on states.customer_id = accounts.customer_id
left join mrr on mrr.customer_id = accounts.customer_id
order by accounts.account_id
"""


# The churn-risk band and reasons of every CRM account whose customer was scored on the published date
# (written only for scored customers: the fields of the others are left as they are).
CHURN_SQL = """
select accounts.entity_id as account_id, risk.risk_band, coalesce(risk.top_reasons, '') as top_reasons
from marts.dim_customer_hierarchy as accounts
inner join marts.customer_churn_risk as risk on risk.customer_id = accounts.customer_id
where accounts.entity_type = 'crm_account' and risk.score_date = $as_of and risk.risk_band is not null
order by 1
"""


class CrmSyncError(RuntimeError):
    """The sync could not finish; everything the CRM accepted before it stopped is recorded."""


@dataclass(frozen=True)
class EnterpriseView:
    """The desired CRM field values per account, as of one published date."""

    as_of: dt.date
    publish_id: str
    values: dict[str, dict[str, str]]  # account id -> field -> canonical text value


@dataclass
class SyncReport:
    sync_id: str
    as_of: dt.date
    publish_id: str
    accounts_considered: int = 0
    accounts_changed: int = 0  # accounts with at least one field to write
    accounts_patched: int = 0
    fields_written: int = 0
    requests: int = 0  # HTTP requests, retries included
    retries: int = 0
    missing_accounts: list[str] = field(default_factory=list)  # in the warehouse but unknown to the CRM (404)
    bulk_jobs: int = 0  # bulk update jobs used (0: the collection endpoint)
    seconds: float = 0.0


def sync_db_path(settings: Settings) -> Path:
    """Where the sync state and log live (derived from the data directory; nothing to configure)."""
    return settings.data_dir / "egress" / "crm_sync.sqlite"


# --- the enterprise view ---------------------------------------------------------------------------


def _canonical(field_name: str, value: Any) -> str:
    if field_name in (STATE_FIELD, CHURN_RISK_FIELD, CHURN_REASONS_FIELD):
        return str(value)
    if field_name == DELINQUENT_FIELD:
        return "1" if value else "0"
    return str(Decimal(value).quantize(Decimal("0.01")))


def _api_value(field_name: str, text: str) -> Any:
    """The JSON value the CRM field takes (integer 0/1 flag, real MRR)."""
    if field_name == DELINQUENT_FIELD:
        return int(text)
    if field_name == MRR_FIELD:
        return float(text)
    return text


def enterprise_view(
    settings: Settings, registry: Registry | None = None, limits: Limits | None = None
) -> EnterpriseView:
    """Desired values for every CRM account, from the published analyst warehouse (opened read-only)."""
    path = settings.analytics_db
    if not path.exists():
        raise CrmSyncError(f"nothing is published yet ({path} does not exist): run the pipeline first")
    live_states = list((registry or load_registry()).live_contract_states)
    with connect(path, read_only=True, limits=limits) as conn:
        latest = conn.execute(
            "select as_of_date, publish_id from publish.publish_log order by published_at desc limit 1"
        ).fetchall()
        if not latest or latest[0][0] is None:
            raise CrmSyncError(f"{path} records no publish with an as-of date")
        as_of, publish_id = latest[0]
        rows = conn.execute(VIEW_SQL, {"as_of": as_of, "live_states": live_states}).fetchall()
        scored = conn.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'customer_churn_risk'"
        ).fetchone()
        churn = conn.execute(CHURN_SQL, {"as_of": as_of}).fetchall() if scored and scored[0] else []
    values = {
        str(account): {
            STATE_FIELD: _canonical(STATE_FIELD, state),
            DELINQUENT_FIELD: _canonical(DELINQUENT_FIELD, delinquent),
            MRR_FIELD: _canonical(MRR_FIELD, mrr),
        }
        for account, state, delinquent, mrr in rows
    }
    for account, band, reasons in churn:
        if str(account) in values:
            values[str(account)][CHURN_RISK_FIELD] = _canonical(CHURN_RISK_FIELD, band)
            values[str(account)][CHURN_REASONS_FIELD] = _canonical(CHURN_REASONS_FIELD, reasons)
    return EnterpriseView(as_of=as_of, publish_id=str(publish_id), values=values)


# --- sync state ------------------------------------------------------------------------------------


def _open_state(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)  # explicit transactions only
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma busy_timeout=30000")
    conn.executescript(SCHEMA)
    return conn


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _synced(conn: sqlite3.Connection) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for account, field_name, value in conn.execute("select account_id, field, value from synced_values"):
        out.setdefault(account, {})[field_name] = value
    return out


def _record(conn: sqlite3.Connection, sync_id: str, writes: dict[str, dict[str, str]]) -> int:
    """Record the writes one request made: log rows and last-synced values land together or not at all.

    The recorded values are re-read inside the (immediate, write-locked) transaction and only fields that
    really change are logged, so recording the same write twice (a concurrent sync, a replay) adds nothing.
    """
    at = _now()
    logged = 0
    conn.execute("begin immediate")
    try:
        for account_id, fields in writes.items():
            current = dict(
                conn.execute("select field, value from synced_values where account_id = ?", (account_id,)).fetchall()
            )
            changed = {f: v for f, v in fields.items() if f not in current or current[f] != v}
            conn.executemany(
                "insert into sync_log (sync_id, account_id, field, old_value, new_value, synced_at) "
                "values (?, ?, ?, ?, ?, ?)",
                [(sync_id, account_id, f, current.get(f), v, at) for f, v in changed.items()],
            )
            conn.executemany(
                "insert into synced_values (account_id, field, value, synced_at, sync_id) values (?, ?, ?, ?, ?) "
                "on conflict (account_id, field) do update set value = excluded.value, "
                "synced_at = excluded.synced_at, sync_id = excluded.sync_id",
                [(account_id, f, v, at, sync_id) for f, v in changed.items()],
            )
            logged += len(changed)
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
    return logged


def _finish_run(conn: sqlite3.Connection, report: SyncReport, status: str, error: str | None = None) -> None:
    conn.execute(
        "update sync_runs set finished_at = ?, status = ?, accounts_considered = ?, accounts_patched = ?, "
        "fields_written = ?, requests = ?, retries = ?, error = ? where sync_id = ?",
        (
            _now(),
            status,
            report.accounts_considered,
            report.accounts_patched,
            report.fields_written,
            report.requests,
            report.retries,
            error,
            report.sync_id,
        ),
    )


def _read_state(settings: Settings, query: str) -> list[dict[str, Any]]:
    """Rows of the sync state file, read-only (none before the first sync)."""
    path = sync_db_path(settings)
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(query).fetchall()]


def read_sync_log(settings: Settings) -> list[dict[str, Any]]:
    """The sync log, oldest first: (sync_id, account_id, field, old_value, new_value, synced_at)."""
    return _read_state(
        settings, "select sync_id, account_id, field, old_value, new_value, synced_at from sync_log order by seq"
    )


def read_sync_runs(settings: Settings) -> list[dict[str, Any]]:
    """Every sync attempted, oldest first, with its status (running, completed, failed) and counts."""
    return _read_state(settings, "select * from sync_runs order by started_at")


# --- the CRM write client --------------------------------------------------------------------------


class _Pacer:
    """Spaces requests at least 1/rate apart, so a long sync stays under the CRM's rate limit."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
            now = time.monotonic()
        self.next_at = now + self.interval


@dataclass
class AccountWrite:
    account_id: str
    fields: dict[str, Any]  # API values of the fields to set
    idempotency_key: str


class CrmWriter:
    """``PATCH /api/v1/accounts`` (many accounts per request) with the CRM connector's retry policy
    (429/Retry-After, 5xx, timeouts)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        policy: RetryPolicy | None = None,
        max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.policy.timeout,
            transport=transport,
        )
        self.pacer = _Pacer(max_requests_per_second)
        self.requests = 0
        self.retries = 0

    def close(self) -> None:
        self.http.close()

    def patch_accounts(self, writes: list[AccountWrite]) -> tuple[dict[str, bool], dict[str, str]]:
        """Write the accounts in one request: per account, True when written, False when the CRM does not
        know it (it may come back); and the writes the CRM refused, with its reason. Raises when the CRM
        keeps failing."""
        return _outcomes(writes, self._retried(f"PATCH of {_accounts(writes)}", lambda: self._once(writes)))

    def _retried(self, what: str, once: Callable[[], T]) -> T:
        """``once()`` under the connector's retry policy; a CrmSyncError naming ``what`` when it keeps failing."""
        retrying = retrying_policy(self.policy)
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.retries += 1
                    return once()
        except TransientCrmError as exc:
            raise CrmSyncError(
                f"CRM {what} failed after {self.policy.max_attempts} attempts; last error: {exc}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One paced, counted request; a CrmSyncError for an answer no retry can change."""
        self.pacer.wait()
        self.requests += 1
        resp = send(self.http, self.policy, method, path, **kwargs)
        if resp.status_code == 401:
            raise CrmSyncError("the CRM refused the token (401): check CRM_TOKEN")
        if resp.status_code >= 400:
            raise CrmSyncError(f"CRM {what} answered {resp.status_code}: {resp.text[:300]}")
        return resp

    def _once(self, writes: list[AccountWrite]) -> list[dict[str, Any]]:
        body = {
            "records": [{"id": w.account_id, "fields": w.fields, "idempotency_key": w.idempotency_key} for w in writes]
        }
        resp = self._send(f"PATCH of {_accounts(writes)}", "PATCH", "/api/v1/accounts", json=body)
        return list(resp.json()["results"])

    def _json(self, what: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A JSON answer, retried; a truncated one is transient."""

        def once() -> dict[str, Any]:
            resp = self._send(what, method, path, **kwargs)
            try:
                return dict(resp.json())
            except ValueError as exc:
                raise TransientCrmError(f"malformed or truncated answer ({len(resp.content)} bytes)") from exc

        return self._retried(what, once)

    def bulk_update(self, writes: list[AccountWrite], key: str) -> tuple[dict[str, bool], dict[str, str]]:
        """Write the accounts through one bulk update job (``key``: the job's idempotency key): per account,
        written or not known to the CRM, and the writes the CRM refused with its reason."""
        what = f"bulk update of {_accounts(writes)}"
        job = self._json(
            what,
            "POST",
            "/api/v1/bulk/ingest",
            json={"object": "accounts", "operation": "update"},
            headers={"Idempotency-Key": key},
        )
        path = f"/api/v1/bulk/ingest/{job['id']}"
        if job["state"] == "Open":  # not closed by an attempt whose answer was lost
            lines = "".join(
                json.dumps({"id": w.account_id, "fields": w.fields, "idempotency_key": w.idempotency_key}) + "\n"
                for w in writes
            )
            upload = gzip.compress(lines.encode(), compresslevel=1)
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}
            self._json(what, "PUT", f"{path}/records", content=upload, headers=headers)
            job = self._json(what, "PATCH", path, json={"state": "UploadComplete"})
        wait, deadline = JOB_POLL_SECONDS, time.monotonic() + JOB_TIMEOUT_SECONDS
        while job["state"] in ("UploadComplete", "InProgress"):
            if time.monotonic() > deadline:
                raise CrmSyncError(
                    f"the CRM's bulk update job {job['id']} of {_accounts(writes)} is still {job['state']} after "
                    f"{JOB_TIMEOUT_SECONDS:g}s"
                )
            time.sleep(wait)
            wait = min(2 * wait, JOB_POLL_MAX_SECONDS)
            job = self._json(what, "GET", path)
        if job["state"] != "JobComplete":
            raise CrmSyncError(
                f"the CRM's bulk update job {job['id']} of {_accounts(writes)} ended {job['state']}: "
                f"{job.get('error', '')}"
            )
        results = self._retried(what, lambda: self._results(what, f"{path}/results", len(writes)))
        with contextlib.suppress(CrmSyncError):  # the CRM drops it later anyway
            self._json(what, "DELETE", path)
        return _outcomes(writes, results)

    def _results(self, what: str, path: str, expected: int) -> list[dict[str, Any]]:
        resp = self._send(what, "GET", path)
        try:
            results = [json.loads(line) for line in gzip.decompress(resp.content).splitlines()]
        except (OSError, EOFError, ValueError) as exc:
            raise TransientCrmError(f"truncated bulk update results ({len(resp.content)} bytes)") from exc
        if len(results) != expected:
            raise TransientCrmError(f"bulk update results hold {len(results)} records, not {expected}")
        return results


def _outcomes(writes: list[AccountWrite], results: list[dict[str, Any]]) -> tuple[dict[str, bool], dict[str, str]]:
    """Per account: True when the CRM wrote it, False when it does not know it; and the refused writes with
    the CRM's reason (an account missing from the answer counts as refused)."""
    by_id = {r["id"]: r for r in results}
    written: dict[str, bool] = {}
    refused: dict[str, str] = {}
    for write in writes:
        result = by_id.get(write.account_id, {"status": "missing from the CRM's answer"})
        if result["status"] in ("updated", "not_found"):
            written[write.account_id] = result["status"] == "updated"
        else:
            refused[write.account_id] = str(result.get("error") or result["status"])
    return written, refused


def _accounts(writes: list[AccountWrite]) -> str:
    """Names the accounts of a request in errors: all of them when few, else the first and last."""
    ids = [w.account_id for w in writes]
    if len(ids) <= 3:
        return f"account{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
    return f"{len(ids)} accounts ({ids[0]} .. {ids[-1]})"


def idempotency_key(account_id: str, old: dict[str, str | None], new: dict[str, str]) -> str:
    """The same write (same account, same recorded old values, same new values) always has the same key.

    Old values are part of it so that a later, legitimate write of an earlier value (A, B, then A again)
    is not mistaken for a replay by a CRM that deduplicates on the key.
    """
    parts = [account_id] + [f"{f}:{old.get(f)}->{new[f]}" for f in sorted(new)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


# --- the sync --------------------------------------------------------------------------------------


def sync_crm(
    settings: Settings,
    base_url: str,
    token: str,
    *,
    progress: ProgressCallback | None = None,
    policy: RetryPolicy | None = None,
    max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
    full: bool = False,
    registry: Registry | None = None,
    transport: httpx.BaseTransport | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bulk_from: int | None = None,
    job_size: int = MAX_JOB_RECORDS,
    limits: Limits | None = None,
) -> SyncReport:
    """Write the enterprise view to the CRM, only the fields that changed since the last sync.

    From ``bulk_from`` accounts with changes (default :func:`bulk_from_setting`) they go through bulk update
    jobs of at most ``job_size`` accounts, else through the collection endpoint ``batch_size`` at a time.
    ``progress(done, total)`` is called after each request or job (done and total: accounts with changes).
    ``full`` re-sends every field of every account (to repair edits made in the CRM by hand); the log
    still records only values that differ from the last sync. Raises :class:`CrmSyncError` naming the
    accounts when the CRM keeps failing; a re-run resumes with the accounts not yet written. ``limits`` are
    the DuckDB limits the analyst file is read under (:func:`dataops.publish.status.platform_status`).
    """
    if not 1 <= batch_size <= DEFAULT_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {DEFAULT_BATCH_SIZE} (the CRM's limit), not {batch_size}")
    if not 1 <= job_size <= MAX_JOB_RECORDS:
        raise ValueError(f"job_size must be between 1 and {MAX_JOB_RECORDS} (the CRM's limit), not {job_size}")
    threshold = bulk_from_setting() if bulk_from is None else bulk_from
    started = time.monotonic()
    view = enterprise_view(settings, registry, limits)
    report = SyncReport(
        sync_id=uuid.uuid4().hex[:16],
        as_of=view.as_of,
        publish_id=view.publish_id,
        accounts_considered=len(view.values),
    )
    with closing(_open_state(sync_db_path(settings))) as state:
        state.execute(
            "insert into sync_runs (sync_id, started_at, status, as_of_date, publish_id) "
            "values (?, ?, 'running', ?, ?)",
            (report.sync_id, _now(), view.as_of.isoformat(), view.publish_id),
        )
        synced = _synced(state)
        todo = _changes(view, synced, full)
        report.accounts_changed = len(todo)
        log.info(
            "CRM sync %s: %d accounts as of %s, %d to write", report.sync_id, len(view.values), view.as_of, len(todo)
        )
        writer = CrmWriter(base_url, token, policy, max_requests_per_second, transport)
        try:
            bulk = len(todo) >= threshold
            for done in _write(writer, state, report, todo, synced, job_size if bulk else batch_size, bulk):
                if progress is not None:
                    progress(done, len(todo))
        except BaseException as exc:
            _fail_run(state, report, writer, started, exc, len(todo))
            raise
        finally:
            writer.close()
        report.seconds = time.monotonic() - started
        _finish_run(state, report, "completed")
    log.info(
        "CRM sync %s: %d accounts patched, %d fields written, %d requests (%d retries, %d bulk jobs) in %.1fs",
        report.sync_id,
        report.accounts_patched,
        report.fields_written,
        report.requests,
        report.retries,
        report.bulk_jobs,
        report.seconds,
    )
    return report


def _changes(
    view: EnterpriseView, synced: dict[str, dict[str, str | None]], full: bool
) -> list[tuple[str, dict[str, str]]]:
    """Each account's fields that differ from what the last sync wrote (every field with ``full``)."""
    todo: list[tuple[str, dict[str, str]]] = []
    for account_id, desired in view.values.items():
        recorded = synced.get(account_id, {})
        changed = dict(desired) if full else {f: v for f, v in desired.items() if recorded.get(f) != v}
        if changed:
            todo.append((account_id, changed))
    return todo


def bulk_from_setting() -> int:
    """Accounts with changes from which the sync uses bulk update jobs: ``CRM_SYNC_BULK_FROM``, else
    :data:`DEFAULT_BULK_FROM`."""
    value = os.environ.get("CRM_SYNC_BULK_FROM", "").strip()
    try:
        return int(value) if value else DEFAULT_BULK_FROM
    except ValueError as exc:
        raise CrmSyncError(f"CRM_SYNC_BULK_FROM must be a whole number of accounts, not {value!r}") from exc


def _writes(batch: list[tuple[str, dict[str, str]]], synced: dict[str, dict[str, str | None]]) -> list[AccountWrite]:
    return [
        AccountWrite(
            account_id,
            {f: _api_value(f, v) for f, v in changed.items()},
            idempotency_key(account_id, synced.get(account_id, {}), changed),
        )
        for account_id, changed in batch
    ]


def _accept(
    state: sqlite3.Connection, report: SyncReport, batch: list[tuple[str, dict[str, str]]], written: dict[str, bool]
) -> None:
    """Record the writes the CRM accepted; report the accounts it does not know."""
    accepted = {account_id: changed for account_id, changed in batch if written.get(account_id)}
    report.fields_written += _record(state, report.sync_id, accepted)
    report.accounts_patched += len(accepted)
    for account_id, _ in batch:
        if written.get(account_id) is False:
            report.missing_accounts.append(account_id)
            log.warning("CRM sync %s: account %s is not in the CRM (not found); skipped", report.sync_id, account_id)


def _refuse(refused: dict[str, str]) -> None:
    """Fail the sync naming the writes the CRM refused (a field it does not let the enterprise write): a
    re-run would be refused again, so this needs a person; every other write has been sent and recorded."""
    if refused:
        account, error = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more accounts)" if len(refused) > 1 else ""
        raise CrmSyncError(f"the CRM refused the write of account {account}: {error}{more}")


def _write(
    writer: CrmWriter,
    state: sqlite3.Connection,
    report: SyncReport,
    todo: list[tuple[str, dict[str, str]]],
    synced: dict[str, dict[str, str | None]],
    size: int,
    bulk: bool,
) -> Iterator[int]:
    """Send the changes ``size`` accounts at a time, by ``PATCH`` or (``bulk``) one bulk update job each,
    recording each part's accepted accounts as soon as the CRM answers; yields accounts done. Writes the CRM
    refused fail the sync once every part is sent and its accepted writes recorded."""
    done, refused = 0, {}
    for number, first in enumerate(range(0, len(todo), size)):
        batch = todo[first : first + size]
        if bulk:
            written, part_refused = writer.bulk_update(_writes(batch, synced), f"{report.sync_id}-{number}")
            report.bulk_jobs += 1
        else:
            written, part_refused = writer.patch_accounts(_writes(batch, synced))
        _accept(state, report, batch, written)
        refused.update(part_refused)
        report.requests, report.retries = writer.requests, writer.retries
        done += len(batch)
        log.info("CRM sync %s: %d/%d accounts written%s", report.sync_id, done, len(todo), " in bulk" * bulk)
        yield done
    _refuse(refused)


def _fail_run(
    state: sqlite3.Connection,
    report: SyncReport,
    writer: CrmWriter,
    started: float,
    exc: BaseException,
    total: int,
) -> None:
    """Record a sync that stopped part-way, and say how far it got (a CrmSyncError is raised with that)."""
    report.requests, report.retries = writer.requests, writer.retries
    report.seconds = time.monotonic() - started
    message = (
        f"{exc} ({report.accounts_patched} of {total} accounts were written and recorded; re-run the sync to resume)"
    )
    _finish_run(state, report, "failed", message)
    if isinstance(exc, CrmSyncError):
        raise CrmSyncError(message) from exc


def crm_endpoint(base_url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """The CRM to write to: the given URL and token, else ``CRM_BASE_URL`` and ``CRM_TOKEN``."""
    base_url = base_url or os.environ.get("CRM_BASE_URL") or None
    if not base_url:
        raise CrmSyncError(
            "no CRM configured: set CRM_BASE_URL and CRM_TOKEN (`dataops` commands serve the simulated CRM of the "
            "data directory and set them)"
        )
    return base_url, token or os.environ.get("CRM_TOKEN") or ""
