"""A long window is ingested in blocks of days within a row budget (docs/decisions/0064): the same raw layer as
a budget larger than the window, one version per table and run that appears whole or not at all, and the bad
rows of a late block quarantined with their file and date."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.core.warehouse import held_open
from dataops.ingest import lake, pipeline
from dataops.ingest.connectors import Extractor, SourceDataError
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.load import quarantine_name
from dataops.ingest.pipeline import IngestOptions, ingest, land
from quality.contracts import CONTRACTS, contract_for
from tests.dataops.ingest.conftest import END, START, Sources, snapshot
from tests.dataops.ingest.test_raw_digests import kept_as_scanned

pytestmark = pytest.mark.xdist_group("ingest")
TINY = IngestOptions(block_rows=40)  # a few days of the busiest tables of the tiny simulation


class Counting:
    """An extractor that notes each extraction's days (and stops the process at the ``kill_at``-th)."""

    def __init__(self, inner: Extractor, kill_at: int | None = None) -> None:
        self.inner, self.kill_at = inner, kill_at
        self.calls: list[tuple[dt.date, dt.date]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        self.calls.append((start, end))
        if self.kill_at is not None and len(self.calls) == self.kill_at:
            os._exit(9)  # killed: no exception handler, no clean-up
        return self.inner.extract(table, start, end)


def test_a_window_in_many_blocks_gives_the_raw_layer_of_a_budget_larger_than_the_window(
    baseline: Sources, fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[str, dt.date, dt.date]] = []
    reading = pipeline.read_landed

    def counted(settings: Settings, contract: Any, start: dt.date, end: dt.date, *more: Any) -> Any:
        read.append((contract.name, start, end))
        return reading(settings, contract, start, end, *more)

    monkeypatch.setattr(pipeline, "read_landed", counted)
    extractors = fresh.extractors()
    calls: dict[str, list[tuple[dt.date, dt.date]]] = {}
    with held_open(fresh.settings.build_db, TINY.limits):  # as a run does: the warehouse open for all tables
        for name, contract in CONTRACTS.items():
            counting = Counting(extractors[contract.system])
            ingest(fresh.settings, contract, counting, START, END, options=TINY)
            calls[name] = counting.calls
    # every table landed in blocks that cover the window once, in order, and was loaded in blocks
    for name, blocks in calls.items():
        assert blocks[0][0] == START and blocks[-1][1] == END, name
        assert all(b[0] == a[1] + dt.timedelta(days=1) for a, b in itertools.pairwise(blocks)), name
        versions = lake.all_versions(fresh.settings.lake_dir, *name.split("."))
        assert len(versions) == 1 and sorted(versions[0].rows) == pipeline.days(START, END), name
    assert max(len(b) for b in calls.values()) >= 5
    assert max(sum(1 for n, _, _ in read if n == name) for name in CONTRACTS) >= 5
    assert snapshot(fresh.settings.build_db) == snapshot(baseline.settings.build_db)
    assert kept_as_scanned(fresh.settings.build_db) == kept_as_scanned(baseline.settings.build_db)


def _land_and_die(root: str, table: str) -> None:
    """In its own process: land an ERP table in tiny blocks, killed at the third block."""
    settings = Settings(Path(root))
    counting = Counting(ErpExtractor(settings.erp_db), kill_at=3)
    land(settings, contract_for("erp", table), counting, START, END, block_rows=TINY.block_rows)


def test_a_landing_killed_between_blocks_leaves_no_version_and_a_rerun_completes(
    baseline: Sources, simulated: Path, tmp_path: Path
) -> None:
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    table = "sales_order_lines"
    child = multiprocessing.get_context("spawn").Process(target=_land_and_die, args=(str(tmp_path), table))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 9
    written = lake.table_dir(settings.lake_dir, "erp", table)
    assert any(written.rglob("*.parquet"))  # two blocks were written before the kill ...
    assert lake.all_versions(settings.lake_dir, "erp", table) == []  # ... and none of it is visible
    assert not any(p.name.startswith(lake.VERSION_PREFIX) for p in written.iterdir())
    for name in ("erp.customers", "erp.contracts", "erp.sales_orders", f"erp.{table}"):
        ingest(settings, CONTRACTS[name], ErpExtractor(settings.erp_db), START, END, options=TINY)
    assert len(lake.all_versions(settings.lake_dir, "erp", table)) == 1
    assert [p.name for p in written.iterdir() if p.name.startswith(".")] == []  # the dead run's folder went
    ours, theirs = snapshot(settings.build_db), snapshot(baseline.settings.build_db)
    assert ours[f"raw.erp__{table}"] == theirs[f"raw.erp__{table}"]


LATE = END - dt.timedelta(days=2)  # in the window's last block at the tiny budget


def _redeliver(settings: Settings, day: dt.date, table: str, edit: Any) -> Path:
    """Change a delivered accounting file (``edit`` of its text) and its manifest entry to match."""
    folder = settings.accounting_exports / day.isoformat()
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = [e for e in manifest["files"] if e["table"] == table][-1]
    path = folder / entry["name"]
    data = edit(path.read_bytes().decode("utf-8-sig")).encode()
    path.write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_a_bad_row_in_a_late_block_is_quarantined_with_its_file_and_date(simulated: Path, tmp_path: Path) -> None:
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    table = "fx_rates"

    def unreadable_rate(text: str) -> str:
        header, first, rest = text.split("\r\n", 2)
        fields = first.split(",")
        column = header.split(",").index("usd_per_unit")
        fields[column] = "not-a-number"
        return "\r\n".join([header, ",".join(fields), rest])

    path = _redeliver(settings, LATE, table, unreadable_rate)
    counting = Counting(AccountingExtractor(settings.accounting_exports))
    report = ingest(settings, contract_for("accounting", table), counting, START, END, options=TINY)
    assert len(counting.calls) > 1 and counting.calls[0][1] < LATE  # the bad day is not in the first block
    assert report.quarantined_rows == 1
    quarantine = quarantine_name(contract_for("accounting", table))
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        rows = conn.execute(f"select _source, _partition, _reasons from {quarantine}").fetchall()
    assert [row[:2] for row in rows] == [(f"{LATE.isoformat()}/{path.name}", LATE)]
    assert any("usd_per_unit" in reason and "not-a-number" in reason for reason in rows[0][2]), rows


def test_a_malformed_line_in_a_late_block_names_its_file_date_and_line(simulated: Path, tmp_path: Path) -> None:
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    table = "fx_rates"

    def surplus_field_on_line_3(text: str) -> str:
        lines = text.split("\r\n")
        lines[2] += ",surplus"
        return "\r\n".join(lines)

    path = _redeliver(settings, LATE, table, surplus_field_on_line_3)
    counting = Counting(AccountingExtractor(settings.accounting_exports))
    with pytest.raises(SourceDataError) as caught:
        land(settings, contract_for("accounting", table), counting, START, END, block_rows=TINY.block_rows)
    assert len(counting.calls) > 1 and counting.calls[0][1] < LATE
    message = str(caught.value)
    assert str(path) in message and f"business date {LATE}" in message and "line 3" in message, message
    assert lake.all_versions(settings.lake_dir, "accounting", table) == []


def test_a_live_writers_folder_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    """Only a folder whose writer's lock is free is abandoned: a landing in progress keeps its own."""
    at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    live = lake.VersionWriter(tmp_path, "erp", "customers", at, "aaaaaaaa-live")
    root = lake.table_dir(tmp_path, "erp", "customers")
    assert lake.remove_abandoned(root) == [] and live.aside.exists()
    live._lock.close()  # as the kernel does for a killed process
    assert lake.remove_abandoned(root) == [live.aside] and list(root.iterdir()) == []


def test_a_window_far_below_the_budget_lands_in_a_few_blocks_and_blocks_near_it_double(
    simulated: Path, tmp_path: Path
) -> None:
    """The first block is one day; while a block's rows fill a small part of the budget at the busiest day's
    rate, the next may have up to sixteen times its days, not one doubling at a time; a quiet first day does
    not size the rest of a long window. Near the budget a block has at most twice the days of the last, and
    never more than the budget holds at the busiest day read (decision 0070)."""
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    counting = Counting(ErpExtractor(settings.erp_db))
    land(settings, contract_for("erp", "sales_order_lines"), counting, START, END)
    second = START + dt.timedelta(days=1)
    assert counting.calls == [
        (START, START),
        (second, second + dt.timedelta(days=15)),
        (second + dt.timedelta(days=16), END),
    ]
    assert pipeline.next_span(800, 10, 1) == 10  # ten days at the busiest day's rows: an eighth of the budget
    assert pipeline.next_span(800, 10, 10) == 20  # past an eighth, twice the last block's days
    assert pipeline.next_span(800, 10, 50) == 80  # and no more days than the budget holds at that rate
    assert pipeline.next_span(800, 1000, 4) == 1  # a day past the budget is a block of its own
    assert pipeline.next_span(800_000, 1, 1) == 16  # a quiet first day: sixteen days, not the budget's 100,000
    assert pipeline.next_span(800_000, 1, 16) == 256
    assert pipeline.next_span(800, 0, 4) == 8  # no rows read yet: twice the last block's days
