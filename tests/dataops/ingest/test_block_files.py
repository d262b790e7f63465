"""The block layout of the lake (the default, docs/decisions/0086): a version holds one file per block of days
instead of one per day, and reads, replaces, prunes, archives and tells an unchanged day by day as the day layout
(``DATAOPS_LAKE_FILES=day``) does."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from dataops.governance.archive import archive, plan_lake, restore_all
from dataops.ingest import lake
from dataops.ingest.pipeline import IngestOptions, ingest, land, newest_landed, read_landed
from dataops.publish.unchanged import Held, raw_layer_holds_it
from quality.contracts import CONTRACTS
from tests.dataops.ingest.conftest import END, START, Sources, snapshot

pytestmark = pytest.mark.xdist_group("ingest")
SMALL = IngestOptions(block_rows=400)  # a few blocks over the 30 days
# a parent and its child (orphans judged across blocks), a CRM table (its bulk export read block by block)
# and an accounting table (one source file a day)
BLOCK_ROWS = 3_000
TABLES = ("erp.customers", "erp.sales_orders", "crm.leads", "accounting.invoices")


@pytest.mark.parametrize("layout", ["block", "day"])
def test_a_window_lands_one_file_per_block_or_day_and_loads_the_same_raw_layer(
    baseline: Sources, fresh: Sources, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline landed in the default layout's blocks of its own size: neither the layout nor the blocks'
    bounds change the raw layer."""
    monkeypatch.setenv("DATAOPS_LAKE_FILES", layout)
    extractors = fresh.extractors()
    files, with_rows = 0, 0
    for name in TABLES:
        contract = CONTRACTS[name]
        ingest(fresh.settings, contract, extractors[contract.system], START, END, options=SMALL)
        [version] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
        found = sorted(version.path.glob("**/*.parquet"))
        days = [day for day, n in version.rows.items() if n]
        assert version.shared == (layout == "block") and sorted(version.rows) == lake_days(), name
        assert {version.day_file(day) for day in days} == set(found), name  # each day in its block's file
        files, with_rows = files + len(found), with_rows + len(days)
    if layout == "block":
        assert len(TABLES) < files < with_rows / 2  # a file a block, not a day
    else:
        assert files == with_rows
    ours, theirs = snapshot(fresh.settings.build_db), snapshot(baseline.settings.build_db)
    assert ours == {k: v for k, v in theirs.items() if k.split(".")[1].replace("__", ".", 1) in TABLES}


def test_a_newer_version_of_one_day_replaces_that_day_of_a_block_file_and_prune_keeps_the_blocks_other_days(
    fresh: Sources,
) -> None:
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


def test_an_unchanged_day_landed_again_inside_a_block_is_nothing_new(fresh: Sources) -> None:
    """The no-data check (decision 0057) compares the day's records, not its block's."""
    contract = CONTRACTS["erp.customers"]
    extractor = fresh.extractors()["erp"]
    land(fresh.settings, contract, extractor, START, END, "11111111first", block_rows=10_000)  # 1, 16, 13 days
    [first] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
    day = [d for d in sorted(first.rows)[1:17] if first.rows[d]][3]  # inside the second block
    assert first.shared and len({d for d, f in first.files.items() if f == first.day_file(day)}) > 1
    land(fresh.settings, contract, extractor, day, day, "22222222again")
    held = Held({contract.name: {first.name}}, waiting=False, built_at=None, published_at=None)
    assert raw_layer_holds_it(fresh.settings, held, "22222222again", [contract]) is None


def test_archiving_moves_days_sharing_a_file_once_all_are_past_retention_and_restores_them(fresh: Sources) -> None:
    contract = CONTRACTS["erp.sales_orders"]  # rows every day
    extractor = fresh.extractors()["erp"]
    land(fresh.settings, contract, extractor, START, END, "11111111first", block_rows=BLOCK_ROWS)
    [first] = lake.all_versions(fresh.settings.lake_dir, contract.system, contract.table)
    blocks = [sorted(d for d in first.files if first.files[d] == file) for file in sorted(set(first.files.values()))]
    assert len(blocks) > 1 and len(blocks[1]) > 5, [(b[0], b[-1]) for b in blocks]
    day = blocks[1][3]
    land(fresh.settings, contract, extractor, day, day, "22222222again")  # a newer copy of a day of block 2
    before, *_ = read_landed(fresh.settings, contract, START, END)
    files = sorted(fresh.settings.lake_dir.rglob("*.parquet"))
    retention = dt.timedelta(days=contract.retention_days)

    inside = blocks[1][5] + retention  # the cutoff inside the second block: the first block only goes
    [moved] = archive(fresh.settings, {}, inside)
    assert moved.period == blocks[0][0].isoformat() and moved.rows == first.rows[blocks[0][0]]
    [kept] = plan_lake(fresh.settings, inside)[1]
    assert kept.days == blocks[1][:5] and kept.until == blocks[1][-1]
    assert "shares its file with days inside retention" in str(kept)
    now, *_ = read_landed(fresh.settings, contract, blocks[1][0], END)
    assert now.equals(before.filter(before["_partition"] > blocks[0][0]))  # every kept day, the newest copy

    [moved] = archive(fresh.settings, {}, blocks[1][-1] + retention + dt.timedelta(days=1))  # block 2 and its day
    assert moved.period == f"{blocks[1][0]}..{blocks[1][-1]}"
    assert moved.rows == sum(first.rows[d] for d in blocks[1]) + first.rows[day]  # both versions' copies
    assert not lake.versions(fresh.settings.lake_dir, contract.system, contract.table, day)
    now, *_ = read_landed(fresh.settings, contract, blocks[1][-1] + dt.timedelta(days=1), END)
    rest = before.filter(before["_partition"] > blocks[1][-1])
    assert now.height == rest.height and (not rest.height or now.equals(rest))

    assert len(restore_all(fresh.settings)) == 2
    assert sorted(fresh.settings.lake_dir.rglob("*.parquet")) == files
    now, *_ = read_landed(fresh.settings, contract, START, END)
    assert now.equals(before)


class Killed(BaseException):
    """The process killed at this point: nothing after it runs, no handler sees it."""


def test_an_archive_or_a_restore_killed_half_way_completes_when_run_again(
    fresh: Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between two files, or after the last one before its log says so, an archive or a restore run again
    completes it: nothing is lost from the lake or left out of the log. A file already put back and identical to
    its archived copy (a copy across file systems killed before the copy was removed) counts as moved; a
    different one is refused before anything moves, naming both."""
    from dataops.governance import archive as archiving

    contract = CONTRACTS["erp.sales_orders"]
    extractor = fresh.extractors()["erp"]
    land(fresh.settings, contract, extractor, START, END, "11111111first", block_rows=BLOCK_ROWS)
    land(fresh.settings, contract, extractor, END, END, "22222222again")  # a day folder beside the blocks
    before, *_ = read_landed(fresh.settings, contract, START, END)
    files = {p: p.read_bytes() for p in sorted(fresh.settings.lake_dir.rglob("*.parquet"))}
    as_of = END + dt.timedelta(days=contract.retention_days + 1)

    def kill_after(module: object, name: str, calls: int) -> None:
        real, done = getattr(module, name), []

        def once_then_killed(*args: object) -> object:
            if len(done) == calls:
                raise Killed
            done.append(args)
            return real(*args)

        monkeypatch.setattr(module, name, once_then_killed)

    for module, name, calls in ((shutil, "move", 1), (archiving, "_record", 0)):  # the archive: killed after a
        kill_after(module, name, calls)  # first move, then run again and killed at its first log entry
        with pytest.raises(Killed):
            archive(fresh.settings, {}, as_of)
        monkeypatch.undo()
    archive(fresh.settings, {}, as_of)
    assert not list(fresh.settings.lake_dir.rglob("*.parquet"))
    restore_all(fresh.settings)  # the first move's too: it was logged before it moved
    assert {p: p.read_bytes() for p in sorted(fresh.settings.lake_dir.rglob("*.parquet"))} == files

    archive(fresh.settings, {}, as_of)
    kill_after(os, "rename", 1)  # the restore: killed after its first file
    with pytest.raises(Killed):
        restore_all(fresh.settings)
    monkeypatch.undo()
    kill_after(archiving, "_mark_restored", 0)  # then after its last file, before its log says so
    with pytest.raises(Killed):
        restore_all(fresh.settings)
    monkeypatch.undo()
    assert restore_all(fresh.settings)
    assert all(entry[4] is not None for entry in archiving.archive_log(fresh.settings))  # each one restored
    assert {p: p.read_bytes() for p in sorted(fresh.settings.lake_dir.rglob("*.parquet"))} == files

    archive(fresh.settings, {}, as_of)
    archived = sorted(fresh.settings.archive_dir.rglob("*.parquet"))[0]
    home = next(p for p in files if files[p] == archived.read_bytes())
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_bytes(b"not the archived file")
    with pytest.raises(FileExistsError, match=f"{home} exists again and differs from {archived}"):
        restore_all(fresh.settings)
    assert not [p for p in fresh.settings.lake_dir.rglob("*.parquet") if p != home]  # nothing moved
    home.write_bytes(archived.read_bytes())  # now as a copy killed before the archived copy went
    restore_all(fresh.settings)

    assert {p: p.read_bytes() for p in sorted(fresh.settings.lake_dir.rglob("*.parquet"))} == files
    assert not [p for p in fresh.settings.archive_dir.rglob("*") if "lake" in p.parts and p.is_file()]
    now, *_ = read_landed(fresh.settings, contract, START, END)
    assert now.equals(before)


def test_an_unknown_layout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_LAKE_FILES", "month")
    with pytest.raises(ValueError, match="DATAOPS_LAKE_FILES"):
        lake.layout()


def lake_days() -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range((END - START).days + 1)]
