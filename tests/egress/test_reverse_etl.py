"""Reverse ETL to the mock CRM: the enterprise view lands, only changes are sent, faults resume cleanly.

The expected values come from the simulator (its world's account hierarchy, its truth of customer
states, and its own ledger of contract spells and FX rates for MRR), not from the pipeline's SQL.
"""

from __future__ import annotations

import datetime as dt
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
from dataops.egress.reverse_etl import (
    CHURN_FIELDS,
    DEFAULT_BATCH_SIZE,
    DELINQUENT_FIELD,
    FIELDS,
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
            if method == "PATCH"
            for record in body["records"]  # type: ignore[attr-defined]
        ]


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


def test_a_write_the_crm_refuses_names_the_account_and_an_unknown_one_is_reported() -> None:
    def crm(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        answers = {
            "A1": {"status": "updated"},
            "A2": {"status": "not_found"},
            "A3": {"status": "invalid", "error": "no"},
        }
        return httpx.Response(200, json={"results": [{"id": r["id"], **answers[r["id"]]} for r in records]})

    writer = CrmWriter("http://crm.test", "t", max_requests_per_second=None, transport=httpx.MockTransport(crm))
    writes = [AccountWrite(a, {STATE_FIELD: "active"}, a) for a in ("A1", "A2")]
    assert writer.patch_accounts(writes) == {"A1": True, "A2": False}
    with pytest.raises(CrmSyncError, match="refused the write of account A3: no"):
        writer.patch_accounts([*writes, AccountWrite("A3", {STATE_FIELD: "active"}, "A3")])


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

    # A later publish finds one customer delinquent: make it so in the analyst warehouse.
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
        family = {
            r[0]
            for r in conn.execute(
                "select entity_id from marts.dim_customer_hierarchy "
                "where entity_type = 'crm_account' and customer_id = ?",
                [customer],
            ).fetchall()
        }
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
