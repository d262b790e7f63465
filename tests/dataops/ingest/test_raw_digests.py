"""Each raw table's digest is kept by the loads that write it, equal to a scan of the table, in the same
transaction as the rows (docs/decisions/0075). What a build does with a digest no load kept:
tests/dataops/test_transform.py."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import duckdb
import pytest

from dataops.core.digest import table_digest
from dataops.ingest import pipeline
from dataops.ingest.pipeline import ingest
from dataops.ingest.raw_digests import kept_digests, read_columns
from quality.contracts import CONTRACTS
from tests.dataops.ingest.conftest import START, Sources

pytestmark = pytest.mark.xdist_group("ingest")

Digests = dict[str, tuple[int, str | None]]


def kept_as_scanned(build_db: Path) -> Digests:
    """Every raw table's kept digest, asserted equal to a scan of the table (columns, rows and hash sum)."""
    with duckdb.connect(str(build_db), read_only=True) as conn:
        columns, kept = read_columns(conn), kept_digests(conn)
        assert set(kept) == set(columns)
        found = {}
        for table, read in columns.items():
            scanned = table_digest(conn, "raw", table, [name for name, _ in read])
            assert (kept[table].rows, kept[table].hash_sum) == scanned, table
            assert json.loads(kept[table].columns) == [list(column) for column in read], table
            found[table] = scanned
    return found


def test_the_first_load_keeps_each_raw_tables_digest(baseline: Sources) -> None:
    digests = kept_as_scanned(baseline.settings.build_db)
    assert len(digests) == len(CONTRACTS) and all(rows for rows, _ in digests.values())


DAY = START + dt.timedelta(days=9)


def _rename_a_customer(settings_erp: Path, day: dt.date) -> None:
    """The ERP changes a customer it last updated on ``day`` (the change keeps its day: its extract changes)."""
    with sqlite3.connect(settings_erp) as erp:
        erp.execute(
            "update customers set customer_name = customer_name || ' GmbH' where customer_no = "
            "(select min(customer_no) from customers where updated_at like ?)",
            [f"{day}%"],
        )
        assert erp.total_changes == 1


def test_a_reloaded_day_keeps_the_digest_of_what_it_loaded(ingested_copy: Sources) -> None:
    settings, erp = ingested_copy.settings, ingested_copy.extractors()["erp"]
    customers, orders = CONTRACTS["erp.customers"], CONTRACTS["erp.sales_orders"]
    before = kept_as_scanned(settings.build_db)
    ingest(settings, customers, erp, DAY, DAY)  # the same rows again, from a new extraction
    ingest(settings, orders, erp, DAY, DAY + dt.timedelta(days=2))
    assert kept_as_scanned(settings.build_db) == before
    _rename_a_customer(settings.erp_db, DAY)
    ingest(settings, customers, erp, DAY, DAY)
    after = kept_as_scanned(settings.build_db)
    assert after["erp__customers"][0] == before["erp__customers"][0]  # the same count: only the sum tells
    assert after["erp__customers"] != before["erp__customers"]
    assert {t: d for t, d in after.items() if t != "erp__customers"} == {
        t: d for t, d in before.items() if t != "erp__customers"
    }


def test_a_load_that_fails_before_its_commit_leaves_the_digest_with_its_rows(
    ingested_copy: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ingested_copy.settings
    before = kept_as_scanned(settings.build_db)
    _rename_a_customer(settings.erp_db, DAY)

    def killed(*_: object) -> None:  # the load's last write, after its rows and their digest
        raise RuntimeError("killed")

    monkeypatch.setattr(pipeline, "record_load", killed)
    with pytest.raises(RuntimeError, match="killed"):
        ingest(settings, CONTRACTS["erp.customers"], ingested_copy.extractors()["erp"], DAY, DAY)
    assert kept_as_scanned(settings.build_db) == before


ROOT = Path(__file__).resolve().parents[3]
# A statement that changes a raw table's rows, named as the code names raw tables.
WRITES_RAW = re.compile(
    r"(insert\s+(or\s+\w+\s+)?into|delete\s+from|update|alter\s+table|truncate|merge\s+into)\s+"
    r"(\{raw_name\(|\{raw\}|raw\.|\{RAW_SCHEMA\})",
    re.IGNORECASE,
)


def test_only_the_kept_digests_module_writes_raw_rows() -> None:
    """A writer of raw rows that keeps no digest is caught at the next build only if it changed a count: the
    platform's writers go through dataops/ingest/raw_digests.py (a new one must too, or forget the digest)."""
    writers = sorted(
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for package in ("dataops", "application", "orchestration", "quality", "registry")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "raw_digests.py"
        for match in WRITES_RAW.finditer(path.read_text())
    )
    assert writers == []
