"""Ingestion across days: a range is one extraction and one landed version per table, read back and loaded
as one window; the CRM's bulk export gives exactly what its pages give; landing and loading run apart."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.core.warehouse import connect, held_open
from dataops.ingest import lake
from dataops.ingest.connectors import days
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.ledger import mark_built, unbuilt_window
from dataops.ingest.pipeline import ingest, land, load_pending
from dataops.publish.unchanged import held, raw_layer_holds_it
from quality.contracts import CONTRACTS, Contract, contract_for
from source_systems.crm.server import start_in_thread
from source_systems.crm.store import OBJECTS
from tests.dataops.ingest.conftest import END, FAST, START, Sources, ingest_all, snapshot

pytestmark = pytest.mark.xdist_group("ingest")


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_a_range_lands_one_immutable_version_per_table_and_run(ingested_copy: Sources) -> None:
    """The baseline's one run over the 30 days (a copy of it: the same sources ingested by ``ingest_all``)."""
    fresh = ingested_copy
    root = fresh.settings.lake_dir
    first = {c.name: lake.all_versions(root, c.system, c.table) for c in CONTRACTS.values()}
    assert all(len(found) == 1 for found in first.values()), first  # one version of each table for 30 days
    leads = first["crm.leads"][0]
    assert (leads.start, leads.end) == (START, END) and set(leads.rows) == set(days(START, END))
    written = sorted(leads.path.rglob("*.parquet"))
    assert {leads.day_file(d) for d, n in leads.rows.items() if n} == set(written)  # each day with rows in a file
    manifest = json.loads((leads.path / lake.MANIFEST).read_text())
    assert sum(manifest["rows"].values()) == pl.read_parquet(written).height
    before = _files(leads.path)
    ingest_all(fresh, START + dt.timedelta(days=3), START + dt.timedelta(days=5))  # a re-run lands beside it
    after = lake.all_versions(root, "crm", "leads")
    assert len(after) == 2 and after[0].path == leads.path
    assert _files(leads.path) == before  # the first version is left exactly as it was
    assert lake.newest(root, "crm", "leads", START + dt.timedelta(days=4)) == after[1]
    assert lake.newest(root, "crm", "leads", START) == after[0]


def test_the_crm_bulk_export_gives_exactly_the_records_of_its_pages(
    simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(simulated)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the mock CRM keeps its jobs' result files
    # small result files, so that an export comes back as several
    with start_in_thread(settings.crm_db, rate_per_second=1000, burst=1000, bulk_records_per_file=150) as crm:
        paged = CrmExtractor(crm.url, crm.token, page_size=200, policy=FAST, bulk_from_days=10_000)
        bulk = CrmExtractor(crm.url, crm.token, policy=FAST, bulk_from_days=1)
        for table in OBJECTS:
            by_pages, in_bulk = paged.extract(table, START, END), bulk.extract(table, START, END)
            assert by_pages.height > 0, table
            assert in_bulk.columns == by_pages.columns and in_bulk.equals(by_pages), table
        for table in OBJECTS:  # an empty window is empty either way
            assert bulk.extract(table, END + dt.timedelta(days=400), END + dt.timedelta(days=401)).height == 0
    assert list(tmp_path.iterdir()) == []  # every job the extractor deleted left nothing behind


def test_a_truncated_bulk_file_is_fetched_again(simulated: Path) -> None:
    settings = Settings(simulated)
    with start_in_thread(settings.crm_db, rate_per_second=1000, burst=1000) as crm:
        clean = CrmExtractor(crm.url, crm.token, policy=FAST, bulk_from_days=1).extract("leads", START, END)
        crm.faults.truncated = 3  # the job's creation, its status and its file all come back cut
        quick = dataclasses.replace(FAST, max_backoff=0.05)  # three retries, each at once (FAST: up to 0.5 s)
        faulty = CrmExtractor(crm.url, crm.token, policy=quick, bulk_from_days=1)
        assert faulty.extract("leads", START, END).equals(clean)
    assert crm.faults.truncated == 0


def test_landing_and_loading_apart_load_each_landed_version_once(baseline: Sources, fresh: Sources) -> None:
    extractors = fresh.extractors()
    for contract in CONTRACTS.values():  # the landing run: the lake only
        land(fresh.settings, contract, extractors[contract.system], START, END)
    assert not fresh.settings.build_db.exists()
    with held_open(fresh.settings.build_db):  # the build run, which knows no dates: whatever was landed
        for contract in CONTRACTS.values():  # (the warehouse held open for all tables, as the build run does)
            report = load_pending(fresh.settings, contract)
            assert report is not None and (report.start, report.end) == (START, END), contract.name
    assert snapshot(fresh.settings.build_db) == snapshot(baseline.settings.build_db)
    assert all(load_pending(fresh.settings, c) is None for c in CONTRACTS.values())  # nothing new, nothing loaded
    with connect(fresh.settings.build_db) as conn:
        assert unbuilt_window(conn) == (START, END)  # for the next build
        mark_built(conn, dt.datetime.now(dt.UTC))
        assert unbuilt_window(conn) is None
    day = START + dt.timedelta(days=7)
    lines = contract_for("accounting", "journal_lines")
    land(fresh.settings, lines, extractors["accounting"], day, day)  # the same records again: nothing to load
    assert load_pending(fresh.settings, lines) is None
    changed = _landed_again_changed(fresh.settings, lines, day)
    report = load_pending(fresh.settings, lines)
    assert report is not None and (report.start, report.end) == (day, day)
    assert report.loaded_rows + report.quarantined_rows == changed
    with connect(fresh.settings.build_db) as conn:
        assert unbuilt_window(conn) == (day, day)


def _landed_again_changed(settings: Settings, contract: Contract, day: dt.date) -> int:
    """A new version of one day of the table, as a source fix lands it: the newest version's records of that day
    less its first one (how many it holds)."""
    newest = lake.newest(settings.lake_dir, contract.system, contract.table, day)
    path = newest.day_file(day) if newest is not None and newest.rows[day] > 1 else None
    assert path is not None, f"{contract.name} has no version of {day} with two records"
    rows = pl.read_parquet(path, hive_partitioning=False).filter(pl.col(lake.DAY_KEY) == day).slice(1)
    writer = lake.VersionWriter(settings.lake_dir, contract.system, contract.table, dt.datetime.now(dt.UTC), "fix00000")
    writer.write([day], rows)
    writer.commit()
    return rows.height


def test_a_day_landed_again_with_the_same_records_leaves_the_next_build_its_own_days(
    fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A landing of the last day that brought nothing new starts no build (decision 0057). The next build, after
    a source fix of an old day, loads and builds that day alone, not every day from it to the last (0101). The
    first build after the no-data landing matches its versions in the ledger: no later build or no-data check
    reads their records again (0103)."""
    extractors = fresh.extractors()
    with held_open(fresh.settings.build_db):
        for contract in CONTRACTS.values():
            land(fresh.settings, contract, extractors[contract.system], START, END)
            load_pending(fresh.settings, contract)
    lines = contract_for("accounting", "journal_lines")
    land(fresh.settings, lines, extractors["accounting"], END, END)  # before a build too: nothing to load (a run
    assert load_pending(fresh.settings, lines) is None  # halted by a breaker: its re-run judges the unbuilt days)
    with connect(fresh.settings.build_db) as conn:
        assert unbuilt_window(conn) == (START, END)
        mark_built(conn, dt.datetime.now(dt.UTC))
    for contract in CONTRACTS.values():  # the no-data day: every table's last day landed again, the same records
        land(fresh.settings, contract, extractors[contract.system], END, END)
    assert all(load_pending(fresh.settings, c) is None for c in CONTRACTS.values())
    read: list[str] = []
    day_hashes = lake.day_hashes
    monkeypatch.setattr(lake, "day_hashes", lambda v, d: read.append(v.name) or day_hashes(v, d))
    assert all(load_pending(fresh.settings, c) is None for c in CONTRACTS.values())
    with connect(fresh.settings.build_db, read_only=True) as conn:
        assert raw_layer_holds_it(fresh.settings, held(conn), "00000000", []) is None
    assert read == [], "the matched versions were read again"
    old, orders = START + dt.timedelta(days=4), contract_for("erp", "sales_orders")
    fix = _landed_again_changed(fresh.settings, orders, old)
    with held_open(fresh.settings.build_db):
        reports = {c.name: load_pending(fresh.settings, c) for c in CONTRACTS.values()}
    assert {name for name, report in reports.items() if report is not None} == {orders.name}
    assert reports[orders.name] is not None and reports[orders.name].windows == [(old, old)]
    assert reports[orders.name].loaded_rows + reports[orders.name].quarantined_rows == fix
    assert read == [], read  # the fix holds fewer records: no hash need be read
    with connect(fresh.settings.build_db) as conn:
        assert unbuilt_window(conn) == (old, old)


def test_days_landed_out_of_order_load_around_the_day_not_landed_yet(baseline: Sources, fresh: Sources) -> None:
    """Landing runs of days before and after a day whose landing has not finished (runs started together):
    the build loads the days landed, each side of that day, and the day once it lands; same raw layer."""
    extractors = fresh.extractors()
    gap = START + dt.timedelta(days=3)
    for start, end in ((START, gap - dt.timedelta(days=1)), (gap + dt.timedelta(days=1), gap + dt.timedelta(days=5))):
        for contract in CONTRACTS.values():
            land(fresh.settings, contract, extractors[contract.system], start, end)
    with held_open(fresh.settings.build_db):  # each build run holds the warehouse open for all its tables
        for contract in CONTRACTS.values():
            report = load_pending(fresh.settings, contract)
            assert report is not None, contract.name
            assert report.windows == [
                (START, gap - dt.timedelta(days=1)),
                (gap + dt.timedelta(days=1), START + dt.timedelta(days=8)),
            ]
            assert gap not in report.loaded_days
        with connect(fresh.settings.build_db) as conn:
            assert conn.execute("select count(*) from raw.crm__leads where _partition = ?", [gap]).fetchone() == (0,)
    for start, end in ((gap, gap), (gap + dt.timedelta(days=6), END)):
        for contract in CONTRACTS.values():
            land(fresh.settings, contract, extractors[contract.system], start, end)
        with held_open(fresh.settings.build_db):
            for contract in CONTRACTS.values():
                report = load_pending(fresh.settings, contract)
                assert report is not None and report.windows == [(start, end)], contract.name
    assert snapshot(fresh.settings.build_db) == snapshot(baseline.settings.build_db)


def test_a_load_and_its_ledger_entry_land_together(fresh: Sources) -> None:
    """A load that fails leaves the version pending, so the next build loads it."""
    crm = fresh.extractors()["crm"]
    leads = contract_for("crm", "leads")
    land(fresh.settings, leads, crm, START, END)
    fresh.settings.build_db.parent.mkdir(parents=True)
    with duckdb.connect(str(fresh.settings.build_db)) as conn:  # a raw table of the wrong shape: the load fails
        conn.execute("create schema raw; create table raw.crm__leads (nothing integer)")
    with pytest.raises(duckdb.Error):
        load_pending(fresh.settings, leads)
    with duckdb.connect(str(fresh.settings.build_db)) as conn:
        conn.execute("drop table raw.crm__leads")
    report = load_pending(fresh.settings, leads)
    assert report is not None and report.loaded_rows > 0
    assert ingest(fresh.settings, leads, crm, END, END).loaded_rows >= 0
