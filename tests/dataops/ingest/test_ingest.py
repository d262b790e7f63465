"""Ingestion: every record reaches the warehouse exactly once per version, nothing is lost, bad rows are
quarantined with their reasons, and every way of running it again converges to the same raw layer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sqlite3

import duckdb
import httpx
import pandera.polars as pa
import polars as pl
import pytest

from dataops.core.warehouse import held_open
from dataops.ingest import lake, load
from dataops.ingest.connectors import SourceUnavailable
from dataops.ingest.connectors.crm import CrmExtractor, RetryPolicy
from dataops.ingest.contract import ContractViolation
from dataops.ingest.load import QuarantineRateExceeded
from dataops.ingest.pipeline import IngestOptions, ingest, rebuild_raw, with_lineage
from quality.contracts import CONTRACTS, Contract, contract_for
from quality.contracts.accounting import RENAMING_RELEASE
from source_systems.crm.api import MAX_LIMIT
from tests.dataops.ingest.conftest import END, FAST, START, Sources, ingest_all, snapshot
from tests.dataops.ingest.test_raw_digests import kept_as_scanned
from tests.source_systems.helpers import accounting_rows

pytestmark = pytest.mark.xdist_group("ingest")

WINDOW = (f"{START} 00:00:00", f"{END + dt.timedelta(days=1)} 00:00:00")


def _emitted(sources: Sources, system: str, table: str) -> int:
    s = sources.settings
    if system == "erp":
        with sqlite3.connect(s.erp_db) as conn:
            return conn.execute(
                f"select count(*) from {table} where updated_at >= ? and updated_at < ?", WINDOW
            ).fetchone()[0]
    if system == "crm":
        with sqlite3.connect(s.crm_db) as conn:
            since, until = (w.replace(" ", "T") + ".000Z" for w in WINDOW)
            return conn.execute(
                f"select count(*) from {table} where SystemModstamp >= ? and SystemModstamp < ?", (since, until)
            ).fetchone()[0]
    return accounting_rows(s.sources_dir, table, current_only=True).height


def _count(sources: Sources, schema: str, name: str) -> int:
    with duckdb.connect(str(sources.settings.build_db), read_only=True) as conn:
        return conn.execute(f"select count(*) from {schema}.{name.replace('.', '__')}").fetchone()[0]


def test_every_emitted_record_is_loaded_or_quarantined(baseline: Sources) -> None:
    for name, contract in CONTRACTS.items():
        emitted = _emitted(baseline, contract.system, contract.table)
        report = baseline.reports[name]  # type: ignore[attr-defined]
        assert report.landed_rows == emitted, name
        assert report.loaded_rows + report.quarantined_rows == emitted, name
        assert _count(baseline, "raw", name) + _count(baseline, "quarantine", name) == emitted, name
    assert sum(r.landed_rows for r in baseline.reports.values()) > 2000  # type: ignore[attr-defined]


def test_quarantine_holds_exactly_the_bogus_records_with_reasons(baseline: Sources) -> None:
    dirt = pl.read_parquet(baseline.settings.truth_dir / "dirt_log.parquet")
    bogus = dirt.filter(pl.col("class") == "bogus")
    assert bogus.height > 20
    with duckdb.connect(str(baseline.settings.build_db), read_only=True) as conn:
        for contract in CONTRACTS.values():
            system = "acct" if contract.system == "accounting" else contract.system
            expected = set(bogus.filter((pl.col("system") == system) & (pl.col("table") == contract.table))["key"])
            rows = conn.execute(
                f"select _key, _reasons, _payload from quarantine.{contract.system}__{contract.table}"
            ).fetchall()
            assert {r[0] for r in rows} == expected, contract.name
            for _key, reasons, payload in rows:
                assert reasons, "every quarantined row says why"
                assert json.loads(payload), "and keeps its original payload"


def test_reasons_name_the_rule_that_failed(baseline: Sources) -> None:
    dirt = pl.read_parquet(baseline.settings.truth_dir / "dirt_log.parquet").filter(pl.col("class") == "bogus")
    expected_reason = {
        "orphan_fk": "orphan_fk",
        "null_required": "not_nullable",
        "bad_amount": "greater_than",
        "invalid_email": "valid_email",
    }
    with duckdb.connect(str(baseline.settings.build_db), read_only=True) as conn:
        for kind, table, key in dirt.select("kind", "table", "key").iter_rows():
            system = {"acct": "accounting"}.get(dirt.filter(pl.col("key") == key)["system"][0])
            system = system or dirt.filter(pl.col("key") == key)["system"][0]
            reasons = conn.execute(
                f"select _reasons from quarantine.{system}__{table} where _key = ?", [key]
            ).fetchone()[0]
            assert any(expected_reason[kind] in r for r in reasons), (table, key, reasons)


def test_rerunning_a_partition_or_the_range_changes_nothing(ingested_copy: Sources) -> None:
    before = snapshot(ingested_copy.settings.build_db)
    digests = kept_as_scanned(ingested_copy.settings.build_db)
    extractors = ingested_copy.extractors()
    day = START + dt.timedelta(days=9)
    with held_open(ingested_copy.settings.build_db):  # each run holds the warehouse open for all its tables
        for contract in CONTRACTS.values():
            ingest(ingested_copy.settings, contract, extractors[contract.system], day, day)
    assert snapshot(ingested_copy.settings.build_db) == before
    ingest_all(ingested_copy)
    ingest_all(ingested_copy)
    assert snapshot(ingested_copy.settings.build_db) == before
    # in whatever order: the last week first, then the range
    with held_open(ingested_copy.settings.build_db):
        for contract in reversed(CONTRACTS.values()):
            ingest(ingested_copy.settings, contract, extractors[contract.system], END - dt.timedelta(days=6), END)
    assert snapshot(ingested_copy.settings.build_db) == before
    assert kept_as_scanned(ingested_copy.settings.build_db) == digests  # a build finds them unchanged


def test_crm_faults_are_survived_with_the_same_result(baseline: Sources, fresh: Sources) -> None:
    """The CRM's tables only: the faults are the CRM server's, and no CRM table references another system's."""
    fresh.crm.faults.errors_5xx = 3
    fresh.crm.faults.rate_limited, fresh.crm.faults.retry_after = 3, 0.05
    fresh.crm.faults.slow, fresh.crm.faults.slow_seconds = 2, 1.5  # beyond the 1 s client timeout
    fresh.crm.faults.truncated = 2
    # The faults come back to back (ten failed answers in a row): a patient but bounded policy. Its waits are
    # short (each retry waits at most 0.05 s, what Retry-After asks): ten waits of FAST's up to 0.5 s and two
    # 2-s timeouts kept this test idle for about 8 s of its 11.
    # Attempts to spare beyond the ten faults: a loaded machine may time out an ordinary answer now and then.
    policy = dataclasses.replace(FAST, max_attempts=16, max_backoff=0.05, timeout=1.0)
    crm = fresh.extractors(policy)["crm"]
    crm_contracts = [c for c in CONTRACTS.values() if c.system == "crm"]
    assert all(f"crm.{parent}" in CONTRACTS for c in crm_contracts for parent, _ in c.references.values())
    with held_open(fresh.settings.build_db):
        for contract in crm_contracts:
            ingest(fresh.settings, contract, crm, START, END)
    assert fresh.crm.faults.errors_5xx == fresh.crm.faults.truncated == fresh.crm.faults.slow == 0
    crm_tables = {f"{schema}.crm__{c.table}" for c in crm_contracts for schema in ("raw", "quarantine")}
    expected = {k: v for k, v in snapshot(baseline.settings.build_db).items() if k in crm_tables}
    assert len(expected) == 2 * len(crm_contracts)
    assert snapshot(fresh.settings.build_db) == expected


def test_the_crm_is_read_in_pages_as_large_as_its_api_allows() -> None:
    """Each request counts against the CRM's rate limit: the fewer pages, the fewer waits."""
    limits: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        limits.append(request.url.params["limit"])
        cursor = None if "cursor" in request.url.params else "next"
        return httpx.Response(200, json={"object": "leads", "records": [], "next_cursor": cursor})

    extractor = CrmExtractor("http://crm.test", "token")
    extractor.http = httpx.Client(base_url="http://crm.test", transport=httpx.MockTransport(api))
    extractor.records("leads", dt.datetime(2025, 2, 1, tzinfo=dt.UTC), dt.datetime(2025, 2, 2, tzinfo=dt.UTC))
    assert limits == [str(MAX_LIMIT)] * 2


@pytest.mark.parametrize(
    ("bulk_from_days", "request_line", "last"),
    [(7, "POST /api/v1/bulk/jobs", END), (10_000, "GET /api/v1/leads", START)],  # a range in bulk, or page by page
)
def test_a_crm_that_keeps_failing_fails_clearly_and_loads_nothing(
    fresh: Sources, bulk_from_days: int, request_line: str, last: dt.date
) -> None:
    """The failed request is named with its business dates: the window's bulk job, or the first block's page."""
    fresh.crm.faults.errors_5xx = 10_000
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)  # not a second of jitter each
    extractor = CrmExtractor(fresh.crm.url, fresh.crm.token, policy=policy, bulk_from_days=bulk_from_days)
    expected = rf"CRM {request_line} \(business dates {START}..{last}\) failed after 4 attempts; last error: 503"
    with pytest.raises(SourceUnavailable, match=expected):
        ingest(fresh.settings, contract_for("crm", "leads"), extractor, START, END)
    assert extractor.attempts == 4
    assert not fresh.settings.build_db.exists()
    assert lake.landed_days(fresh.settings.lake_dir, "crm", "leads") == []


def test_a_crash_between_landing_and_loading_converges_on_rerun(baseline: Sources, ingested_copy: Sources) -> None:
    """On a copy of the baseline: every table ingested once, then a re-run of one crashes after its landing."""
    fresh = ingested_copy
    extractors = fresh.extractors()

    def crash() -> None:
        raise RuntimeError("power cut")

    contract = contract_for("accounting", "payments")
    with pytest.raises(RuntimeError, match="power cut"):
        ingest(fresh.settings, contract, extractors["accounting"], START, END, after_landing=crash)
    assert len(lake.versions(fresh.settings.lake_dir, "accounting", "payments", START)) == 2
    ingest(fresh.settings, contract, extractors["accounting"], START, END)
    assert snapshot(fresh.settings.build_db) == snapshot(baseline.settings.build_db)


def test_schema_drift_lands_new_columns_and_needs_the_alias(baseline: Sources, fresh: Sources) -> None:
    """The baseline's window lies after the accounting release that renamed amount: every invoice file has
    gross_amount and po_number, which only the contract's alias makes loadable."""
    assert RENAMING_RELEASE.date <= START
    with duckdb.connect(str(baseline.settings.build_db), read_only=True) as conn:
        extras = conn.execute(
            "select _partition, _extra from raw.accounting__invoices where _extra is not null"
        ).fetchall()
    assert extras and all("po_number" in json.loads(e) for _, e in extras)
    assert "po_number" in baseline.reports["accounting.invoices"].extra_columns  # type: ignore[attr-defined]
    invoices = contract_for("accounting", "invoices")
    no_alias = dataclasses.replace(invoices, aliases={})
    accounting = fresh.extractors()["accounting"]
    with pytest.raises(ContractViolation) as failure:
        ingest(fresh.settings, no_alias, accounting, START, END)
    message = str(failure.value)
    assert f"{START}/invoices.csv" in message and "'amount'" in message and "gross_amount" in message
    named = re.search(r"landed as (lake/raw/accounting/invoices/version=\S+\.parquet)", message)
    assert named, message  # and its landed copy: a file holding the day's rows
    landed = pl.read_parquet(fresh.settings.data_dir / named[1], hive_partitioning=False)
    assert landed.filter(pl.col("_partition") == START).height > 0, message
    report = ingest(fresh.settings, invoices, accounting, START, END)
    assert report.loaded_rows == report.landed_rows - report.quarantined_rows > 0


def test_the_landing_zone_alone_rebuilds_the_raw_layer(ingested_copy: Sources) -> None:
    before = snapshot(ingested_copy.settings.build_db)
    ingested_copy.settings.build_db.unlink()
    rebuild_raw(ingested_copy.settings)
    assert snapshot(ingested_copy.settings.build_db) == before
    kept_as_scanned(ingested_copy.settings.build_db)


def test_too_many_bad_rows_fail_the_partition_and_load_nothing(fresh: Sources) -> None:
    strict = IngestOptions(max_quarantine_rate=0.001, min_quarantined=0)
    leads = contract_for("crm", "leads")
    with pytest.raises(QuarantineRateExceeded) as failure:
        ingest(fresh.settings, leads, fresh.extractors()["crm"], START, END, options=strict)
    message = str(failure.value)
    assert "crm.leads from crm:leads, business date 2025-02-" in message and "Top reasons:" in message
    assert "Nothing was loaded" in message
    with duckdb.connect(str(fresh.settings.build_db), read_only=True) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_name = 'crm__leads'"
        ).fetchone()[0]
        assert tables == 0 or conn.execute("select count(*) from raw.crm__leads").fetchone()[0] == 0


def test_orphans_wait_in_quarantine_until_their_parent_arrives(baseline: Sources, fresh: Sources) -> None:
    crm = fresh.extractors()["crm"]
    history, leads = contract_for("crm", "lead_history"), contract_for("crm", "leads")
    first = ingest(fresh.settings, history, crm, START, END)  # before any lead is loaded
    assert first.orphans == first.landed_rows - (first.quarantined_rows - first.orphans)
    ingest(fresh.settings, leads, crm, START, END)
    again = ingest(fresh.settings, history, crm, END, END)  # any later load releases them
    assert again.released > 0
    expected = snapshot(baseline.settings.build_db)
    got = snapshot(fresh.settings.build_db)
    for table in ("raw.crm__lead_history", "quarantine.crm__lead_history", "raw.crm__leads"):
        assert got[table] == expected[table]
    kept_as_scanned(fresh.settings.build_db)  # the released rows' hashes were added too
    # The ledger names each released row: it keeps its own partition, outside the releasing load's window, and
    # the staging models recompute its record from it (docs/decisions/0065).
    with duckdb.connect(str(fresh.settings.build_db), read_only=True) as conn:
        released = conn.execute(
            "select partition, record_hash from pipeline.released_rows "
            "where system = 'crm' and table_name = 'lead_history' and built_at is null"
        ).fetchall()
        in_raw = conn.execute(
            "select count(*) from raw.crm__lead_history where (_partition, _record_hash) in "
            "(select partition, record_hash from pipeline.released_rows)"
        ).fetchone()
    assert len(released) == again.released and in_raw == (again.released,)
    assert min(partition for partition, _ in released) < END


def test_a_load_reads_back_only_the_orphans_whose_parent_may_have_arrived(
    fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orphans still waiting for a parent that never arrived stay in the warehouse: a later load reads
    none of them back (decision 0104), so its cost does not grow with every orphan ever quarantined."""
    crm = fresh.extractors()["crm"]
    history, leads = contract_for("crm", "lead_history"), contract_for("crm", "leads")
    ingest(fresh.settings, history, crm, START, END)
    ingest(fresh.settings, leads, crm, START, END)
    ingest(fresh.settings, history, crm, END, END)  # releases every orphan whose lead arrived
    with duckdb.connect(str(fresh.settings.build_db), read_only=True) as conn:
        orphans = conn.execute(
            "select count(*) from quarantine.crm__lead_history "
            "where len(list_filter(_reasons, lambda r: not starts_with(r, 'orphan_fk'))) = 0"
        ).fetchone()
    assert orphans is not None and orphans[0] > 0, "no orphan waits for a lead never loaded"
    checked: list[int] = []
    real = load._orphans

    def spy(conn: duckdb.DuckDBPyConnection, contract: Contract, frame: str) -> dict[int, list[str]]:
        if frame == "_candidates":
            checked.append(int(conn.execute(f"select count(*) from {frame}").fetchone()[0]))  # type: ignore[index]
        return real(conn, contract, frame)

    monkeypatch.setattr(load, "_orphans", spy)
    report = ingest(fresh.settings, history, crm, END, END)
    assert report.released == 0 and checked == [], f"{orphans[0]} orphans waiting, read back: {checked}"


class _IntegerLines(pa.DataFrameModel):
    line_id: str
    order_id: pl.Int64


def test_a_reference_not_a_string_is_never_surely_an_orphan() -> None:
    """The contract reads an integer reference its own way (``" 42"`` is 42): the sure check leaves it to the
    full check, whatever the payload (found in review: a cast of such text failed the whole load)."""
    references = {"order_id": ("sales_orders", "order_no")}
    contract = Contract("erp", "lines", _IntegerLines, key=("line_id",), references=references)
    with duckdb.connect() as conn:
        conn.execute('create schema raw; create table raw.erp__sales_orders ("order_no" varchar)')
        conn.execute("create table q as select unnest(?) as _payload", [['{"order_id": "\u00a042"}']])
        still, params = load._surely_orphaned(conn, contract)
        assert conn.execute(f"select count(*) from q where not ({still})", params).fetchone() == (1,)


def test_an_orphan_the_payload_does_not_surely_name_is_checked_in_full() -> None:
    """Only a reference held as JSON text with no parent in raw keeps an orphan from being read back; a number,
    a null or an absent key (a renamed column supplies the reference) goes to the full check, as before."""
    contract = contract_for("crm", "lead_history")
    with duckdb.connect() as conn:
        conn.execute('create schema raw; create table raw.crm__leads ("Id" varchar)')
        conn.execute("insert into raw.crm__leads values ('L-1'), ('7')")
        payloads = ['{"LeadId": "L-1"}', '{"LeadId": "L-2"}', '{"LeadId": 7}', '{"LeadId": null}', '{"Lead_Id": "L-1"}']
        conn.execute("create table q as select unnest(?) as _payload", [payloads])
        still, params = load._surely_orphaned(conn, contract)
        kept = conn.execute(f"select _payload from q where not ({still})", params).fetchall()
        assert sorted(p for (p,) in kept) == sorted(set(payloads) - {'{"LeadId": "L-2"}'})
        conn.execute("drop table raw.crm__leads")  # no parent table yet: every text reference is surely an orphan
        still, params = load._surely_orphaned(conn, contract)
        kept = conn.execute(f"select _payload from q where not ({still})", params).fetchall()
        assert sorted(p for (p,) in kept) == sorted(['{"LeadId": 7}', '{"LeadId": null}', '{"Lead_Id": "L-1"}'])


def test_old_versions_are_kept_until_an_explicit_prune(ingested_copy: Sources) -> None:
    from typer.testing import CliRunner

    from application.cli import app

    extractors = ingested_copy.extractors()
    with held_open(ingested_copy.settings.build_db):
        for contract in CONTRACTS.values():
            ingest(ingested_copy.settings, contract, extractors[contract.system], START, START)
    root = ingested_copy.settings.lake_dir
    assert len(lake.versions(root, "erp", "customers", START)) == 2
    runner = CliRunner(env={"DATAOPS_DATA_DIR": str(ingested_copy.settings.data_dir)})
    dry = runner.invoke(app, ["lake", "prune", "--dry-run"])
    assert dry.exit_code == 0 and f"{len(CONTRACTS)} old version(s) of a day would be removed" in dry.output
    assert len(lake.versions(root, "erp", "customers", START)) == 2
    result = runner.invoke(app, ["lake", "prune", "--keep", "1"])
    assert result.exit_code == 0 and f"removed {len(CONTRACTS)} old version(s) of a day" in result.output
    assert len(lake.versions(root, "erp", "customers", START)) == 1


def test_a_record_keeps_its_hash_when_only_the_write_back_changed_it() -> None:
    """The CRM sync writes the enterprise's values into each account after every run; re-extracted, the
    account must not look changed to the dbt step's digest (docs/decisions/0020)."""
    written_back = CONTRACTS["crm.accounts"].written_back
    account = pl.DataFrame({"Id": ["A-1"], "Name": ["Acme"], "Enterprise_MRR_USD__c": [2333.41]})

    def record_hash(frame: pl.DataFrame) -> str:
        now = dt.datetime.now(dt.UTC)
        return str(
            with_lineage(frame, "crm", START, now, "run", "crm:accounts", unhashed=written_back)["_record_hash"][0]
        )

    assert record_hash(account) == record_hash(account.with_columns(Enterprise_MRR_USD__c=pl.lit(2330.95)))
    assert record_hash(account) != record_hash(account.with_columns(Name=pl.lit("Acme AG")))
