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
from dataops.governance.archive import archive, restore
from dataops.ingest import lake, pipeline
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
    _version_of(settings, contract, dt.datetime.now(dt.UTC), "fix00000", [day], less=day)
    return newest.rows[day] - 1


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


def _version_of(
    settings: Settings,
    contract: Contract,
    at: dt.datetime,
    run: str,
    days_: list[dt.date],
    less: dt.date | None,
    files: str = "block",
) -> str:
    """A new version of the table's days as the newest landed ones hold them, less the first record of ``less``
    (a changed day); named by ``at``, when its extraction started."""
    newest = lake.newest_by_day(settings.lake_dir, contract.system, contract.table, min(days_), max(days_))
    frames = [pl.read_parquet(p, hive_partitioning=False) for p in {newest[d].day_file(d) for d in days_} if p]
    rows = pl.concat(frames).filter(pl.col(lake.DAY_KEY).is_in(days_)).sort(lake.DAY_KEY, "_record_hash")
    if less is not None:
        first = rows.filter(pl.col(lake.DAY_KEY) == less).head(1)["_record_hash"]
        rows = rows.filter(~((pl.col(lake.DAY_KEY) == less) & pl.col("_record_hash").is_in(first.implode())))
    writer = lake.VersionWriter(settings.lake_dir, contract.system, contract.table, at, run, files=files)
    writer.write(days_, rows)
    writer.commit()
    return writer.final.name.removeprefix(lake.VERSION_PREFIX)


def _busiest(settings: Settings, contract: Contract) -> list[dt.date]:
    """The table's landed days, the most records first (a changed day needs records to lose)."""
    newest = lake.newest_by_day(settings.lake_dir, contract.system, contract.table, START, END)
    return sorted(newest, key=lambda d: (-newest[d].rows[d], d))


def _raw_rows(settings: Settings, contract: Contract, day: dt.date) -> int:
    with connect(settings.build_db, read_only=True) as conn:
        sql = f"select count(*) from raw.{contract.system}__{contract.table} where _partition = ?"
        return int(conn.execute(sql, [day]).fetchone()[0])  # type: ignore[index]


def _built(settings: Settings) -> None:
    with connect(settings.build_db) as conn:
        mark_built(conn, dt.datetime.now(dt.UTC))


def test_a_range_landed_again_with_one_day_changed_is_loaded_once(ingested_copy: Sources) -> None:
    """A version over five days, one of them changed: its build loads that day and settles the version, so
    the next build and the no-data check find nothing new (before, every build loaded the day again)."""
    settings, orders = ingested_copy.settings, contract_for("erp", "sales_orders")
    _built(settings)
    busiest = _busiest(settings, orders)[0]
    first = min(max(busiest - dt.timedelta(days=2), START), END - dt.timedelta(days=4))
    span = [first + dt.timedelta(days=n) for n in range(5)]  # busiest among them, not at the end
    name = _version_of(settings, orders, dt.datetime.now(dt.UTC), "range000", span, less=busiest)
    before = _raw_rows(settings, orders, busiest)
    report = load_pending(settings, orders)
    assert report is not None and report.windows == [(busiest, busiest)]
    assert _raw_rows(settings, orders, busiest) == before - 1
    _built(settings)
    assert load_pending(settings, orders) is None, f"{name} was loaded again"
    with connect(settings.build_db, read_only=True) as conn:
        assert raw_layer_holds_it(settings, held(conn), "00000000", []) is None


def test_a_version_named_before_a_matched_one_is_shadowed_by_it(ingested_copy: Sources) -> None:
    """A version whose extraction started before a matched one's but committed after it is older than it: the
    reader takes the matched one, so neither the build nor the no-data check wants it loaded (they agree)."""
    settings, orders = ingested_copy.settings, contract_for("erp", "sales_orders")
    _built(settings)
    day, started = _busiest(settings, orders)[1], dt.datetime.now(dt.UTC)
    _version_of(settings, orders, started + dt.timedelta(seconds=5), "matched0", [day], less=None)
    assert load_pending(settings, orders) is None  # matched
    before = _raw_rows(settings, orders, day)
    _version_of(settings, orders, started, "earlier0", [day], less=day)
    with connect(settings.build_db, read_only=True) as conn:
        assert raw_layer_holds_it(settings, held(conn), "00000000", []) is None
    assert load_pending(settings, orders) is None
    assert _raw_rows(settings, orders, day) == before


def test_a_version_landed_while_a_load_runs_waits_for_the_next_build(
    ingested_copy: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A landing that commits while a load of its day runs is not recorded as loaded by it (the load reads and
    records from one listing of the lake): the next build loads it."""
    settings, orders = ingested_copy.settings, contract_for("erp", "sales_orders")
    _built(settings)
    day, now = _busiest(settings, orders)[2], dt.datetime.now(dt.UTC)
    _version_of(settings, orders, now, "changed0", [day], less=day)
    landed: list[str] = []
    blocks = pipeline.load_blocks

    def racing(newest: dict[dt.date, lake.Version], block_rows: int) -> list[tuple[dt.date, dt.date]]:
        if not landed:  # a concurrent landing run commits its version now, one more record less
            landed.append(_version_of(settings, orders, now + dt.timedelta(seconds=9), "racing00", [day], less=day))
        return blocks(newest, block_rows)

    monkeypatch.setattr(pipeline, "load_blocks", racing)
    before = _raw_rows(settings, orders, day)
    assert load_pending(settings, orders) is not None and _raw_rows(settings, orders, day) == before - 1
    monkeypatch.setattr(pipeline, "load_blocks", blocks)
    report = load_pending(settings, orders)
    assert report is not None and report.windows == [(day, day)], f"{landed} was recorded as loaded unread"
    assert _raw_rows(settings, orders, day) == before - 2


def test_a_day_restored_from_the_archive_is_judged_with_its_version_again(ingested_copy: Sources) -> None:
    """A version of two days, the older changed: archived before the build, that day is out of the lake, so the
    build judges the version on the other day alone and matches it. Restoring the day makes the next build
    judge the version again and load the day (before: never, the lake's newest and raw disagreeing for good)."""
    settings, customers = ingested_copy.settings, contract_for("erp", "customers")
    _built(settings)
    changed, same = sorted(_busiest(settings, customers)[:2])
    _version_of(settings, customers, dt.datetime.now(dt.UTC), "restore0", [changed, same], less=changed, files="day")
    cutoff = changed + dt.timedelta(days=1)  # the archive takes the days before it: the changed day's folder
    moved = archive(settings, {}, cutoff + dt.timedelta(days=customers.retention_days))
    assert f"lake.{customers.name}" in {item.dataset for item in moved}
    before = _raw_rows(settings, customers, changed)
    assert load_pending(settings, customers) is None  # judged on the other day alone: matched
    restore(settings, f"lake.{customers.name}", changed.isoformat())
    report = load_pending(settings, customers)
    assert report is not None and (changed, changed) in report.windows, "the restored day was never judged again"
    assert _raw_rows(settings, customers, changed) == before - 1


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
