"""The block layout of the lake (``DATAOPS_LAKE_FILES=block``, docs/decisions/0086): a version holds one file per
block of days instead of one per day, and reads, replaces and prunes by day as the day layout does."""

from __future__ import annotations

import datetime as dt

import pytest

from dataops.ingest import lake
from dataops.ingest.pipeline import IngestOptions, ingest, land, newest_landed, read_landed
from quality.contracts import CONTRACTS
from tests.dataops.ingest.conftest import END, START, Sources, snapshot

pytestmark = pytest.mark.xdist_group("ingest")
SMALL = IngestOptions(block_rows=400)  # a few blocks over the 30 days
# a parent and its child (orphans judged across blocks), a CRM table (its bulk export read block by block)
# and an accounting table (one source file a day)
TABLES = ("erp.customers", "erp.sales_orders", "crm.leads", "accounting.invoices")


def test_a_window_lands_one_file_per_block_and_loads_the_raw_layer_of_one_file_per_day(
    baseline: Sources, fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAOPS_LAKE_FILES", "block")
    extractors = fresh.extractors()
    files, with_rows = 0, 0
    for name in TABLES:
        contract = CONTRACTS[name]
        ingest(fresh.settings, contract, extractors[contract.system], START, END, options=SMALL)
        [version] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
        found = sorted(version.path.glob("**/*.parquet"))
        days = [day for day, n in version.rows.items() if n]
        assert version.shared and sorted(version.rows) == lake_days(), name
        assert {version.day_file(day) for day in days} == set(found), name  # each day in its block's file
        files, with_rows = files + len(found), with_rows + len(days)
    assert len(TABLES) < files < with_rows / 2  # a file a block, not a day
    ours, theirs = snapshot(fresh.settings.build_db), snapshot(baseline.settings.build_db)
    assert ours == {k: v for k, v in theirs.items() if k.split(".")[1].replace("__", ".", 1) in TABLES}


def test_a_newer_version_of_one_day_replaces_that_day_of_a_block_file_and_prune_keeps_the_blocks_other_days(
    fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAOPS_LAKE_FILES", "block")
    contract = CONTRACTS["erp.customers"]
    extractor = fresh.extractors()["erp"]
    land(fresh.settings, contract, extractor, START, END, "11111111first", block_rows=10_000)  # 1, 16, 13 days
    [first] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
    day, other = [d for d in sorted(first.rows)[1:17] if first.rows[d]][:2]  # two days of the second block
    land(fresh.settings, contract, extractor, day, day, "22222222second")
    newest = newest_landed(fresh.settings, contract, START, END)
    assert newest[day].name.endswith("22222222") and newest[START].name.endswith("11111111")
    frame, *_ = read_landed(fresh.settings, contract, START, END)
    assert frame.filter(frame["_partition"] == day)["_run_id"].unique().to_list() == ["22222222second"]
    assert frame.height == sum(newest[d].rows[d] for d in newest)  # each day once, from its newest version

    block = first.day_file(day)
    assert block is not None and block == first.day_file(other)
    removed = lake.prune(fresh.settings.lake_dir)  # the first version's copy of ``day`` only
    assert [(v.name[-8:], d) for v, d in removed] == [("11111111", day)]
    [old, new] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
    assert block.exists() and old.day_file(other) == block and set(old.rows) == set(lake_days()) - {day}
    assert new.rows.keys() == {day}
    frame, *_ = read_landed(fresh.settings, contract, START, END)
    assert frame.filter(frame["_partition"] == day)["_run_id"].unique().to_list() == ["22222222second"]
    with pytest.raises(ValueError, match="cannot be moved alone"):  # archiving must not take the other days
        lake.day_folders(fresh.settings.lake_dir, contract.system, contract.table, other)


def test_an_unknown_layout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_LAKE_FILES", "month")
    with pytest.raises(ValueError, match="DATAOPS_LAKE_FILES"):
        lake.layout()


def lake_days() -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range((END - START).days + 1)]
