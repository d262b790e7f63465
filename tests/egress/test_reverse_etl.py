"""Reverse ETL to the mock CRM: the enterprise view lands, only changes are sent, faults resume cleanly.

The expected values come from the simulator (its world's account hierarchy, its truth of customer
states, and its own ledger of contract spells and FX rates for MRR), not from the pipeline's SQL.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import duckdb
import httpx
import numpy as np
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.egress import reverse_etl
from dataops.egress.reverse_etl import (
    CHURN_FIELDS,
    DEFAULT_BATCH_SIZE,
    DELINQUENT_FIELD,
    FIELDS,
    MRR_FIELD,
    STATE_FIELD,
    AccountWrite,
    CrmSyncError,
    CrmWriter,
    crm_endpoint,
    read_sync_log,
    read_sync_runs,
    sync_crm,
    sync_db_path,
)
from dataops.ingest.connectors.crm import RetryPolicy
from quality.contracts import CONTRACTS
from source_systems.crm import store
from source_systems.crm.server import RunningServer, start_in_thread
from source_systems.simulator.run import existing_config, state_dir
from source_systems.simulator.state import State
from source_systems.simulator.truth import LIVE_CODES, contract_intervals, to_usd_cents
from source_systems.simulator.world import build_world
from tests.published import Published, copy_of

pytestmark = pytest.mark.xdist_group("published")

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=2.0, timeout=5.0)


class Recording(httpx.BaseTransport):
    """Passes requests through, keeping (time, method, path, JSON body) of each: the test's own count."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[float, str, str, dict[str, object]]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("content-encoding") == "gzip":  # a bulk job's upload: JSON lines
            body = {"records": [json.loads(line) for line in gzip.decompress(request.content).splitlines()]}
        else:
            body = json.loads(request.content) if request.content else {}
        self.sent.append((time.monotonic(), request.method, request.url.path, body))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    @property
    def patches(self) -> list[tuple[str, dict[str, object]]]:
        """Every account write, in the order sent: (account id, fields), whatever request carried it."""
        return [
            (str(record["id"]), record["fields"])
            for _, method, _, body in self.sent
            if method in ("PATCH", "PUT")
            for record in body.get("records", [])  # type: ignore[attr-defined]
        ]

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of each request, a bulk job's id replaced by ``{id}``."""
        return [(m, "/".join("{id}" if len(part) == 32 else part for part in p.split("/"))) for _, m, p, _ in self.sent]


@pytest.fixture()
def copy(published: Published, tmp_path: Path) -> Published:
    return copy_of(published, tmp_path / "data")


@pytest.fixture()
def crm(copy: Published) -> Iterator[RunningServer]:
    with start_in_thread(copy.settings.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:
        yield server


def crm_fields(settings: Settings) -> dict[str, tuple[object, ...]]:
    """What the CRM store holds in the write-back fields, per account (read directly, as a check)."""
    with closing(sqlite3.connect(settings.crm_db)) as conn:
        rows = conn.execute(f"select Id, {', '.join(FIELDS)} from accounts").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _set_faults(server: RunningServer, **faults: float) -> None:
    resp = httpx.post(
        f"{server.url}/api/v1/_faults", json=faults, headers={"Authorization": f"Bearer {server.token}"}, timeout=5
    )
    resp.raise_for_status()


def simulated_enterprise_view(settings: Settings) -> dict[str, tuple[str, str, int, float]]:
    """Each CRM account's ultimate parent, and its state, delinquent flag and MRR in USD on the last simulated
    day, from the simulator's own world and ledger (integer cents, the registry's conversion rule)."""
    sources = settings.sources_dir
    cfg = existing_config(sources)
    assert cfg is not None
    world = build_world(cfg.seed, cfg.scale)
    state, _ = State.load(state_dir(sources))
    n_days = state.last_day + 1
    last_day = n_days - 1
    as_of = cfg.start + dt.timedelta(days=last_day)
    truth = pl.read_parquet(sources / "truth" / "customer_states_daily.parquet").filter(pl.col("date") == as_of)
    states = {r["customer_key"]: (r["state"], int(r["is_delinquent"])) for r in truth.iter_rows(named=True)}

    mrr = _customer_mrr(state, world.n_customers)
    out = {}
    for account, customer in enumerate(world.acc_customer):
        key = world.acc_crm_id[world.cust_top_account[customer]]
        state_name, delinquent = states[key]
        out[str(world.acc_crm_id[account])] = (str(key), state_name, delinquent, mrr[customer] / 100)
    return out


def _customer_mrr(state: State, n_customers: int) -> dict[int, int]:
    """Each customer's MRR in USD cents on the last simulated day (the registry's conversion rule)."""
    n_days = state.last_day + 1
    last_day = n_days - 1
    spells = contract_intervals(state, n_days).filter(
        pl.col("to_status").is_in(list(LIVE_CODES.values())) & (pl.col("day") <= last_day) & (pl.col("stop") > last_day)
    )
    rate = state.table("fx").filter(pl.col("day") == last_day).sort("currency")["rate_micro"].to_numpy()
    cents = np.zeros((n_customers, 3), dtype=np.int64)
    np.add.at(cents, (spells["customer"].to_numpy(), spells["currency"].to_numpy()), spells["mrr"].to_numpy())
    return {c: int(to_usd_cents(cents[c].reshape(3, 1), rate.reshape(3, 1))[0]) for c in range(n_customers)}


def erp_only_mrr(settings: Settings) -> float:
    """MRR in USD of the customers only the ERP knows (bought through a reseller): in the KPI, not in the CRM."""
    cfg = existing_config(settings.sources_dir)
    assert cfg is not None
    world = build_world(cfg.seed, cfg.scale)
    state, _ = State.load(state_dir(settings.sources_dir))
    mrr = _customer_mrr(state, world.n_customers)
    return sum(mrr[c] for c in range(world.n_parents, world.n_customers)) / 100


def test_the_writable_fields_are_the_crms() -> None:
    assert [*FIELDS, *CHURN_FIELDS] == store.WRITEBACK_FIELDS["accounts"]


def test_the_crms_answer_is_read_per_account_written_unknown_or_refused() -> None:
    def crm(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        answers = {
            "A1": {"status": "updated"},
            "A2": {"status": "not_found"},
            "A3": {"status": "invalid", "error": "no"},
        }
        return httpx.Response(200, json={"results": [{"id": r["id"], **answers[r["id"]]} for r in records]})

    writer = CrmWriter("http://crm.test", "t", max_requests_per_second=None, transport=httpx.MockTransport(crm))
    writes = [AccountWrite(a, {STATE_FIELD: "active"}, a) for a in ("A1", "A2", "A3")]
    assert writer.patch_accounts(writes) == ({"A1": True, "A2": False}, {"A3": "no"})


def test_a_sync_writes_every_accounts_enterprise_view_within_the_rate_limit(copy: Published) -> None:
    settings = copy.settings
    expected = simulated_enterprise_view(settings)
    accounts = crm_fields(settings)
    assert set(accounts) <= set(expected)
    assert all(v == (None, None, None) for v in accounts.values())
    assert any(s == "active" and m > 0 for _, s, _, m in expected.values())  # a world worth checking

    # A tight token bucket: paced requests stay under it, so no request is ever refused.
    recording = Recording()
    progress: list[tuple[int, int]] = []
    with start_in_thread(settings.crm_db, token="t0ken", rate_per_second=100, burst=5) as server:
        report = sync_crm(
            settings,
            server.url,
            server.token,
            max_requests_per_second=80,
            transport=recording,
            progress=lambda done, total: progress.append((done, total)),
            batch_size=5,
        )

    held = crm_fields(settings)
    assert held == {a: (s, d, m) for a, (_, s, d, m) in expected.items() if a in accounts}
    assert report.accounts_considered == report.accounts_patched == len(held)
    assert report.fields_written == 3 * len(held)
    assert len(recording.patches) == len(held)
    assert report.requests == len(recording.sent) == math.ceil(len(held) / 5)  # five accounts per request
    assert all(len(body["records"]) <= 5 for *_, body in recording.sent)  # type: ignore[arg-type]
    assert report.retries == 0
    starts = [t for t, *_ in recording.sent]
    assert starts[-1] - starts[0] >= (len(starts) - 1) / 80 - 0.01  # paced: never faster than 80/s
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.5 / 80
    assert progress[-1] == (len(held), len(held))
    assert all(set(body) == set(FIELDS) for _, body in recording.patches)
    # the sync log has one row per account and field, from nothing to the value written
    entries = read_sync_log(settings)
    assert Counter((e["account_id"], e["field"]) for e in entries) == {(a, f): 1 for a in held for f in FIELDS}
    assert all(e["old_value"] is None for e in entries)
    assert [r["status"] for r in read_sync_runs(settings)] == ["completed"]
    assert sync_db_path(settings).is_relative_to(settings.data_dir)

    # MRR agrees with the published mrr_usd KPI (per-customer rounding aside)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        kpi = conn.execute(
            "select value from kpis.kpi_daily where kpi_name = 'mrr_usd' and date_day = ?", [report.as_of]
        ).fetchall()[0][0]
    per_customer = {customer: m for a, (customer, _, _, m) in expected.items() if a in held}
    assert float(kpi) == pytest.approx(sum(per_customer.values()) + erp_only_mrr(settings), abs=0.05)


def make_a_customer_delinquent(settings: Settings) -> set[str]:
    """A later publish finds one active customer delinquent: make it so in the analyst warehouse; returns
    the CRM accounts of its family."""
    settings.analytics_db.chmod(0o644)
    with duckdb.connect(str(settings.analytics_db)) as conn:
        customer, as_of = conn.execute(
            "select customer_id, date_day from marts.fct_customer_states_daily "
            "where date_day = (select max(date_day) from marts.fct_customer_states_daily) and state = 'active' "
            "and not is_delinquent order by customer_id limit 1"
        ).fetchall()[0]
        conn.execute(
            "update marts.fct_customer_states_daily set is_delinquent = true where customer_id = ? and date_day = ?",
            [customer, as_of],
        )
        return {
            r[0]
            for r in conn.execute(
                "select entity_id from marts.dim_customer_hierarchy "
                "where entity_type = 'crm_account' and customer_id = ?",
                [customer],
            ).fetchall()
        }


def test_a_second_sync_with_nothing_changed_sends_no_write(copy: Published, crm: RunningServer) -> None:
    first = sync_crm(copy.settings, crm.url, crm.token, max_requests_per_second=None)
    assert first.accounts_patched > 0
    before = crm_fields(copy.settings)
    log_before = read_sync_log(copy.settings)

    recording = Recording()
    second = sync_crm(copy.settings, crm.url, crm.token, max_requests_per_second=None, transport=recording)

    assert recording.sent == []
    assert (second.requests, second.accounts_patched, second.fields_written) == (0, 0, 0)
    assert second.accounts_considered == first.accounts_considered
    assert crm_fields(copy.settings) == before
    assert read_sync_log(copy.settings) == log_before
    assert [r["status"] for r in read_sync_runs(copy.settings)] == ["completed", "completed"]


def test_a_changed_value_writes_only_that_field(copy: Published, crm: RunningServer) -> None:
    settings = copy.settings
    sync_crm(settings, crm.url, crm.token, max_requests_per_second=None)

    family = make_a_customer_delinquent(settings)
    before = crm_fields(settings)

    recording = Recording()
    report = sync_crm(settings, crm.url, crm.token, max_requests_per_second=None, transport=recording)

    assert sorted(recording.patches) == sorted((a, {DELINQUENT_FIELD: 1}) for a in family)
    assert report.fields_written == report.accounts_patched == len(family)
    after = crm_fields(settings)
    assert {a for a in after if after[a] != before[a]} == family
    assert all(after[a] == (before[a][0], 1, before[a][2]) for a in family)
    latest = [e for e in read_sync_log(settings) if e["sync_id"] == report.sync_id]
    assert sorted((e["account_id"], e["field"], e["old_value"], e["new_value"]) for e in latest) == sorted(
        (a, DELINQUENT_FIELD, "0", "1") for a in family
    )
    assert all(e["synced_at"] for e in latest)


def test_an_account_the_crm_no_longer_has_is_skipped_and_retried_later(
    copy: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application serves the data directory's simulated CRM and points the sync at it (CRM_BASE_URL)."""
    from application.mock_sources import crm_environment

    settings = copy.settings
    with closing(sqlite3.connect(settings.crm_db)) as conn, conn:
        gone = conn.execute("select Id from accounts order by Id desc limit 1").fetchall()[0][0]
        conn.execute("delete from accounts where Id = ?", (gone,))
    monkeypatch.delenv("CRM_BASE_URL", raising=False)
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    with pytest.raises(CrmSyncError, match="CRM_BASE_URL"):
        crm_endpoint()  # the library starts no mock: only a configured CRM
    with crm_environment(settings):
        url, token = crm_endpoint()
        report = sync_crm(settings, url, token, max_requests_per_second=None)
        assert report.missing_accounts == [gone]
        assert report.accounts_patched == report.accounts_considered - 1
        assert gone not in {e["account_id"] for e in read_sync_log(settings)}
        again = sync_crm(settings, url, token, max_requests_per_second=None)
    assert (again.requests, again.missing_accounts) == (1, [gone])  # asked again: it may come back


def test_a_sync_honours_429_and_retry_after(copy: Published, crm: RunningServer) -> None:
    """The CRM refuses with 429 and Retry-After, then fails once with a 503: the sync waits and completes."""
    settings = copy.settings
    recording = Recording()
    _set_faults(crm, rate_limited=2, retry_after=0.3, errors_5xx=1)
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=5.0, timeout=5.0)
    report = sync_crm(settings, crm.url, crm.token, policy=policy, max_requests_per_second=None, transport=recording)

    held = crm_fields(settings)
    assert report.accounts_patched == len(held) and all(None not in v for v in held.values())
    assert report.retries == 3
    assert report.requests == len(recording.sent) == math.ceil(len(held) / DEFAULT_BATCH_SIZE) + 3
    first, second, third = (t for t, *_ in recording.sent[:3])
    assert second - first >= 0.3 and third - second >= 0.3  # no retry before Retry-After said
    assert len({json.dumps(body) for *_, body in recording.sent[:4]}) == 1  # the same request, until it went through
    log = read_sync_log(settings)
    assert len(log) == len({(e["account_id"], e["field"]) for e in log}) == 3 * len(held)


def test_an_interrupted_sync_completes_on_rerun_with_the_same_state_and_no_duplicates(
    published: Published,
    tmp_path: Path,
) -> None:
    reference = copy_of(published, tmp_path / "reference")
    with start_in_thread(reference.settings.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:
        sync_crm(reference.settings, server.url, server.token, max_requests_per_second=None)
    want_fields = crm_fields(reference.settings)
    want_log = Counter(
        (e["account_id"], e["field"], e["old_value"], e["new_value"]) for e in read_sync_log(reference.settings)
    )

    settings = copy_of(published, tmp_path / "faulty").settings
    with start_in_thread(settings.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:

        def fail_after(n: int, **faults: float) -> Callable[[int, int], None]:
            def progress(done: int, total: int) -> None:
                if done == n:
                    _set_faults(server, **faults)

            return progress

        # 1. 429 (Retry-After) then 5xx until the retry budget is spent, on the sixth request of ten accounts
        with pytest.raises(CrmSyncError, match=r"10 accounts \(\w+ \.\. \w+\) failed after 3 attempts") as first:
            sync_crm(
                settings,
                server.url,
                server.token,
                policy=FAST,
                max_requests_per_second=None,
                progress=fail_after(50, rate_limited=1, retry_after=0.05, errors_5xx=2),
                batch_size=10,
            )
        failed_account = str(first.value).split("(")[1].split(" ")[0]  # the first account of the failed request
        assert "50 of" in str(first.value)
        written = {a for a, v in crm_fields(settings).items() if v != (None, None, None)}
        logged = {e["account_id"] for e in read_sync_log(settings)}
        assert len(written) == 50 and written == logged  # every accepted write is recorded, nothing else
        assert failed_account not in written
        run = read_sync_runs(settings)[-1]
        assert run["status"] == "failed" and failed_account in run["error"] and run["accounts_patched"] == 50

        # 2. the re-run resumes with the failed account, then times out on writes the CRM may still apply
        recording = Recording()
        slow_policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=1.0, timeout=0.2)
        with pytest.raises(CrmSyncError, match="timed out"):
            sync_crm(
                settings,
                server.url,
                server.token,
                policy=slow_policy,
                max_requests_per_second=None,
                transport=recording,
                progress=fail_after(30, slow=2, slow_seconds=0.5),
                batch_size=10,
            )
        assert recording.patches[0][0] == failed_account
        assert not logged & {a for a, _ in recording.patches}  # nothing recorded was sent again
        assert len({e["account_id"] for e in read_sync_log(settings)}) == 80

        # 3. the last re-run completes
        report = sync_crm(settings, server.url, server.token, policy=FAST, max_requests_per_second=None)
        assert report.accounts_patched == len(want_fields) - 80
        time.sleep(0.6)  # let the CRM finish the timed-out requests it was still holding
        final = sync_crm(settings, server.url, server.token, policy=FAST, max_requests_per_second=None)
        assert final.requests == 0

    assert crm_fields(settings) == want_fields
    entries = read_sync_log(settings)
    got_log = Counter((e["account_id"], e["field"], e["old_value"], e["new_value"]) for e in entries)
    assert got_log == want_log
    assert max(Counter((e["account_id"], e["field"], e["new_value"]) for e in entries).values()) == 1
    assert [r["status"] for r in read_sync_runs(settings)] == ["failed", "failed", "completed", "completed"]


def test_the_fields_written_back_are_the_ones_the_crm_contract_declares() -> None:
    """The dbt step's digest ignores a contract's written-back columns (docs/decisions/0020): a field the sync
    writes but the contract does not declare would make every re-run after a sync rebuild for nothing."""
    assert {*FIELDS, *CHURN_FIELDS} == set(CONTRACTS["crm.accounts"].written_back)


# --- the bulk update job (docs/decisions/0079) -----------------------------------------------------

JOB_CALLS = [("POST", "/api/v1/bulk/ingest"), ("PUT", "/api/v1/bulk/ingest/{id}/records")]
JOB_CLOSE = ("PATCH", "/api/v1/bulk/ingest/{id}")
JOB_END = [("GET", "/api/v1/bulk/ingest/{id}/results"), ("DELETE", "/api/v1/bulk/ingest/{id}")]


class Killed(BaseException):
    """The process stopped (a kill), as the sync sees it: not an error it handles."""


class LosingAnswers(Recording):
    """Loses the CRM's answer to the first request of each (method, path) given: the CRM handles the
    request, its answer arrives truncated (the API's ``truncated`` fault)."""

    def __init__(self, server: RunningServer, *calls: tuple[str, str], times: int = 1) -> None:
        super().__init__()
        self.server, self.pending, self.times = server, set(calls), times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = (request.method, "/".join("{id}" if len(p) == 32 else p for p in request.url.path.split("/")))
        if call in self.pending:
            self.pending.discard(call)
            self.server.faults.truncated = self.times
        return super().handle_request(request)


def _sync_log(settings: Settings) -> Counter[tuple[object, ...]]:
    return Counter((e["account_id"], e["field"], e["old_value"], e["new_value"]) for e in read_sync_log(settings))


def _synced_values(settings: Settings) -> dict[tuple[str, str], str | None]:
    with closing(sqlite3.connect(sync_db_path(settings))) as conn:
        return {(a, f): v for a, f, v in conn.execute("select account_id, field, value from synced_values")}


def test_a_large_change_set_goes_through_a_bulk_job_and_a_small_one_through_patch(
    copy: Published, crm: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = copy.settings
    expected = simulated_enterprise_view(settings)
    accounts = crm_fields(settings)
    monkeypatch.setenv("CRM_SYNC_BULK_FROM", str(len(accounts)))  # the first sync writes every account

    recording = Recording()
    report = sync_crm(settings, crm.url, crm.token, max_requests_per_second=None, transport=recording)

    assert report.bulk_jobs == 1
    calls = recording.calls
    assert calls[:3] == [*JOB_CALLS, JOB_CLOSE] and calls[-2:] == JOB_END
    assert set(calls[3:-2]) <= {("GET", "/api/v1/bulk/ingest/{id}")}  # polls, if it was not done at once
    assert report.requests == len(recording.sent) and report.retries == 0
    assert all(set(fields) == set(FIELDS) for _, fields in recording.patches)
    held = crm_fields(settings)
    assert held == {a: (s, d, m) for a, (_, s, d, m) in expected.items() if a in accounts}
    assert report.accounts_patched == len(held) and report.fields_written == 3 * len(held)
    assert _sync_log(settings) == Counter(
        {(a, f, None, _text(f, v)): 1 for a, vs in held.items() for f, v in zip(FIELDS, vs)}
    )

    family = make_a_customer_delinquent(settings)  # one family's change: below the threshold
    recording = Recording()
    small = sync_crm(settings, crm.url, crm.token, max_requests_per_second=None, transport=recording)
    assert small.bulk_jobs == 0
    assert set(recording.calls) == {("PATCH", "/api/v1/accounts")}
    assert sorted(recording.patches) == sorted((a, {DELINQUENT_FIELD: 1}) for a in family)


def _text(field_name: str, value: object) -> str:
    """The sync state's canonical text of a CRM field's value."""
    if field_name == DELINQUENT_FIELD:
        return str(value)
    return str(value) if field_name == STATE_FIELD else f"{value:.2f}"


def test_the_bulk_job_and_patch_leave_the_same_crm_state_and_refusals(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted account, a family's changed flag and writes the CRM refuses (MRR made not writable):
    both paths report the same accounts and leave the same CRM, sync state and log."""
    ends = []
    for name, bulk_from in (("patch", 10**9), ("bulk", 1)):
        settings = copy_of(published, tmp_path / name).settings
        with closing(sqlite3.connect(settings.crm_db)) as conn, conn:
            gone = conn.execute("select Id from accounts order by Id desc limit 1").fetchall()[0][0]
            conn.execute("delete from accounts where Id = ?", (gone,))
        with start_in_thread(settings.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:
            paths = {"max_requests_per_second": None, "bulk_from": bulk_from, "batch_size": 2}  # PATCH: many requests
            first = sync_crm(settings, server.url, server.token, **paths)  # type: ignore[arg-type]
            family = make_a_customer_delinquent(settings)
            with closing(sqlite3.connect(sync_db_path(settings))) as conn, conn:
                refused = [a for (a,) in conn.execute("select distinct account_id from synced_values order by 1")]
                refused = [a for a in refused if a not in family][:3]  # their MRR is sent again, and refused
                conn.executemany(
                    "delete from synced_values where account_id = ? and field = ?", [(a, MRR_FIELD) for a in refused]
                )
            with monkeypatch.context() as patch:
                patch.setitem(store.WRITEBACK_FIELDS, "accounts", [f for f in FIELDS if f != MRR_FIELD])
                with pytest.raises(CrmSyncError, match="refused the write of account") as failed:
                    sync_crm(settings, server.url, server.token, **paths)  # type: ignore[arg-type]
        assert (first.bulk_jobs > 0) == (name == "bulk")
        assert first.missing_accounts == [gone]
        assert f"account {refused[0]}: fields ['{MRR_FIELD}'] are not writable" in str(failed.value)
        assert f"(and {len(refused)} more accounts)" in str(failed.value)  # and the deleted one's MRR, sent again
        assert {(a, f) for a, f in _synced_values(settings) if a in family and f == DELINQUENT_FIELD} == {
            (a, DELINQUENT_FIELD) for a in family
        }  # the accepted writes of the failed sync are recorded
        assert not {(a, MRR_FIELD) for a in refused} & set(_synced_values(settings))
        ends.append((crm_fields(settings), _synced_values(settings), _sync_log(settings), str(failed.value)))
    assert ends[0] == ends[1]


def test_a_bulk_sync_killed_or_failed_part_way_resumes_with_only_what_is_missing(
    published: Published, tmp_path: Path
) -> None:
    reference = copy_of(published, tmp_path / "reference").settings
    with start_in_thread(reference.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:
        sync_crm(reference, server.url, server.token, max_requests_per_second=None, bulk_from=10**9)
    want_fields, want_log = crm_fields(reference), _sync_log(reference)

    settings = copy_of(published, tmp_path / "faulty").settings
    job_size = math.ceil(len(want_fields) / 3)
    bulk = {"max_requests_per_second": None, "bulk_from": 1, "job_size": job_size, "policy": FAST}

    def written() -> set[str]:
        return {a for a, v in crm_fields(settings).items() if v != (None, None, None)}

    def logged() -> set[str]:
        return {e["account_id"] for e in read_sync_log(settings)}

    def kill(done: int, total: int) -> None:
        raise Killed

    with start_in_thread(settings.crm_db, token="t0ken", rate_per_second=10_000, burst=10_000) as server:
        # 1. killed once the first job's results are recorded
        with pytest.raises(Killed):
            sync_crm(settings, server.url, server.token, progress=kill, **bulk)  # type: ignore[arg-type]
        assert len(written()) == job_size and written() == logged()

        # 2. the CRM fails the next job: it applied nothing, nothing more is recorded
        server.faults.failed_jobs = 1
        recording = Recording()
        with pytest.raises(CrmSyncError, match="ended Failed"):
            sync_crm(settings, server.url, server.token, transport=recording, **bulk)  # type: ignore[arg-type]
        assert not logged() & {a for a, _ in recording.patches}  # nothing recorded is sent again
        assert len(written()) == len(logged()) == job_size

        # 3. the next job is applied but its results never arrive: nothing recorded for it
        losing = LosingAnswers(server, ("GET", "/api/v1/bulk/ingest/{id}/results"), times=FAST.max_attempts)
        with pytest.raises(CrmSyncError, match="failed after 3 attempts"):
            sync_crm(settings, server.url, server.token, transport=losing, **bulk)  # type: ignore[arg-type]
        assert len(written()) == 2 * job_size and len(logged()) == job_size

        # 4. the re-run sends what is not recorded (the lost job's accounts again) and completes
        recording, recorded = Recording(), logged()
        report = sync_crm(settings, server.url, server.token, transport=recording, **bulk)  # type: ignore[arg-type]
        assert {a for a, _ in recording.patches} == set(want_fields) - recorded
        assert len(recording.patches) == len(want_fields) - job_size
        assert report.accounts_patched == len(want_fields) - job_size and report.bulk_jobs == 2

    assert crm_fields(settings) == want_fields
    assert _sync_log(settings) == want_log
    assert [r["status"] for r in read_sync_runs(settings)] == ["failed", "failed", "failed", "completed"]


def test_a_bulk_jobs_lost_answers_are_asked_again_without_a_second_job(copy: Published, crm: RunningServer) -> None:
    """The CRM handles each of the job's requests but its answer is lost: the create, the upload, the close
    and the results are each asked again, safely (idempotency key, replacing upload, closing a closed job)."""
    settings = copy.settings
    losing = LosingAnswers(crm, *JOB_CALLS, JOB_CLOSE, JOB_END[0])
    report = sync_crm(
        settings, crm.url, crm.token, max_requests_per_second=None, transport=losing, policy=FAST, bulk_from=1
    )

    assert crm.server.config.app.state.update_jobs_opened == 1
    posts = [r for r in losing.sent if r[1] == "POST"]
    assert len(posts) == 2 and report.retries == 4
    held = crm_fields(settings)
    assert report.accounts_patched == len(held) and all(None not in v for v in held.values())
    assert _sync_log(settings) == Counter(
        {(a, f, None, _text(f, v)): 1 for a, vs in held.items() for f, v in zip(FIELDS, vs)}
    )


def test_a_bulk_job_the_crm_never_finishes_fails_the_sync_in_time(
    copy: Published, crm: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reverse_etl, "JOB_TIMEOUT_SECONDS", 0.3)
    crm.faults.stalled_jobs = 1
    with pytest.raises(CrmSyncError, match=r"is still InProgress after 0.3s \(0 of \d+ accounts were written"):
        sync_crm(copy.settings, crm.url, crm.token, max_requests_per_second=None, bulk_from=1)
    assert read_sync_log(copy.settings) == []
    report = sync_crm(copy.settings, crm.url, crm.token, max_requests_per_second=None, bulk_from=1)
    assert report.accounts_patched == len(crm_fields(copy.settings))
