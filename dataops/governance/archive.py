"""Retention: partitions older than their dataset's retention move to ``data/archive/``, are recorded (and
published in the catalog), and can be restored. Nothing is deleted before its copy is verified.

- landing zone: a day moves with every version's file of it (a source table's retention is its contract's).
  A version's file may hold a block of days (docs/decisions/0086): it moves whole, so the days sharing files
  move together (``lake.move_groups``), once the last of them is past retention. Until then the days past
  retention stay, reported as ``Kept`` ("shares its file with days inside retention"). The archive keeps one
  folder per table and day, ``_partition=D/``, holding each version's day folder under its version's name
  (``version=<v>/``, or ``date=D/`` for the layout before versioned datasets), or one per group of days with a
  block's file, ``days=<first>..<last>/``, holding each path at its place in the table (``version=<v>/<file>``),
  so a restore puts each back where it was. The versions' manifests are left alone: a version no longer covers
  a day whose file is gone (``dataops.ingest.lake``), and covers it again once restored;
- large facts (models whose meta names an ``archive_by`` date column): a month of rows is written to
  Parquet, read back and counted, then deleted from the build warehouse in one transaction.
"""

from __future__ import annotations

import datetime as dt
import errno
import filecmp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataops.core.settings import Settings
from dataops.core.warehouse import connect, scalar, transaction
from dataops.governance.catalog import GOVERNANCE_DDL
from dataops.governance.metadata import DatasetMeta
from dataops.ingest import lake
from dataops.ingest.ledger import forget_judged
from quality.contracts import CONTRACTS

BLOCK_PREFIX = "days="  # the archive's folder of a group of days holding a block's file


@dataclass(frozen=True)
class Archived:
    dataset: str
    period: str
    location: Path
    rows: int


def _record(conn: duckdb.DuckDBPyConnection, item: Archived, at: dt.datetime) -> None:
    conn.execute(
        "insert into governance.archive_log values (?, ?, ?, ?, ?, null)",
        [item.dataset, item.period, str(item.location), item.rows, at],
    )


@dataclass(frozen=True)
class LakeMove:
    """Landed days to archive together, and the paths holding them (``lake.move_groups``)."""

    dataset: str
    period: str  # the day, or ``<first>..<last>`` for days that share a block's file
    target: Path
    paths: list[Path]
    table: Path  # the table's folder in the lake


@dataclass(frozen=True)
class Kept:
    """Landed days past retention that stay in the lake: their file also holds days inside retention (a block's
    file moves whole, decision 0086). They go with the file's last day, ``until``."""

    dataset: str
    days: list[dt.date]
    until: dt.date

    def __str__(self) -> str:
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else str(self.days[0])
        return f"kept {self.dataset} {span}: shares its file with days inside retention (through {self.until})"


def plan_lake(settings: Settings, as_of: dt.date) -> tuple[list[LakeMove], list[Kept]]:
    """Landed days past their source table's retention: what moves, and what stays because it shares a file.

    Only days with rows on disk: a day every version extracted empty has nothing to move. Days move in the
    groups of ``lake.move_groups`` (every version's copy of a day, every day of a block's file), once every day
    of the group is past retention.
    """
    due: list[LakeMove] = []
    kept: list[Kept] = []
    for contract in CONTRACTS.values():
        cutoff = as_of - dt.timedelta(days=contract.retention_days)
        table = lake.table_dir(settings.lake_dir, contract.system, contract.table)
        archived = settings.archive_dir / table.relative_to(settings.data_dir)
        dataset = f"lake.{contract.name}"
        for days, paths in lake.move_groups(settings.lake_dir, contract.system, contract.table):
            if days[-1] < cutoff:
                due.append(_lake_move(dataset, table, archived, days, paths))
            elif days[0] < cutoff:
                kept.append(Kept(dataset, [day for day in days if day < cutoff], days[-1]))
    return due, kept


def _lake_move(dataset: str, table: Path, archived: Path, days: list[dt.date], paths: list[Path]) -> LakeMove:
    """A day of day folders keeps its archive layout (``_partition=D/<version>/``); days with a block's file
    go under ``days=<first>..<last>/``, each path at its place relative to the table (``version=<v>/...``)."""
    first, last = days[0].isoformat(), days[-1].isoformat()
    period = first if first == last else f"{first}..{last}"
    if first == last and all(p.is_dir() for p in paths):
        return LakeMove(dataset, period, archived / f"{lake.DAY_KEY}={first}", paths, table)
    return LakeMove(dataset, period, archived / f"{BLOCK_PREFIX}{first}..{last}", paths, table)


def _move_lake(move: LakeMove) -> None:
    for path in move.paths:
        if move.target.name.startswith(BLOCK_PREFIX):  # at its place in the table: version=<v>/<file or folder>
            archived = move.target / path.relative_to(move.table)
            archived.parent.mkdir(parents=True, exist_ok=True)
        else:
            archived = move.target / _archived_name(path)
        shutil.move(str(path), str(archived))


def _path_rows(path: Path) -> int:
    return lake_rows(path) if path.is_file() else sum(lake_rows(p) for p in path.glob("*.parquet"))


def _archived_name(folder: Path) -> str:
    """A day folder's name inside the archive's day folder: its version (or the legacy ``date=D``)."""
    return folder.parent.name if folder.name.startswith(f"{lake.DAY_KEY}=") else folder.name


def _lake_home(table: Path, archived: Path, day: str) -> Path:
    """Where an archived day folder came from (inverse of ``_archived_name``)."""
    if archived.name.startswith(lake.VERSION_PREFIX):
        return table / archived.name / f"{lake.DAY_KEY}={day}"
    return table / archived.name


def plan_facts(
    conn: duckdb.DuckDBPyConnection, datasets: dict[str, DatasetMeta], as_of: dt.date
) -> list[tuple[str, str, str, int]]:
    """Months of large facts past retention: (dataset, month, date column, rows)."""
    due = []
    for name, ds in sorted(datasets.items()):
        column = ds.meta.get("archive_by")
        retention = ds.meta.get("retention_days")
        if not column or not retention:
            continue
        cutoff = as_of - dt.timedelta(days=int(retention))
        for month, rows in conn.execute(
            f"select strftime({column}, '%Y-%m') as month, count(*) from {name} "
            f"where {column} < date_trunc('month', ?::date) group by 1 order by 1",
            [cutoff],
        ).fetchall():
            due.append((name, str(month), str(column), int(rows)))
    return due


def archive(
    settings: Settings, datasets: dict[str, DatasetMeta], as_of: dt.date, dry_run: bool = False
) -> list[Archived]:
    """Archive everything past retention as of a business date; returns what moved (or would)."""
    done: list[Archived] = []
    now = dt.datetime.now(dt.UTC)
    with connect(settings.build_db) as conn:
        conn.execute(GOVERNANCE_DDL)
        for move in plan_lake(settings, as_of)[0]:
            item = Archived(move.dataset, move.period, move.target, sum(_path_rows(p) for p in move.paths))
            done.append(item)
            if dry_run:
                continue
            move.target.mkdir(parents=True, exist_ok=True)
            _record(conn, item, now)  # first: a move killed half-way leaves a period the restore knows of
            _move_lake(move)
        for dataset, month, column, rows in plan_facts(conn, datasets, as_of):
            target = settings.archive_dir / "warehouse" / dataset / f"period={month}.parquet"
            item = Archived(dataset, month, target, rows)
            done.append(item)
            if dry_run:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            selection = f"select * from {dataset} where strftime({column}, '%Y-%m') = '{month}'"
            conn.execute(f"copy ({selection}) to '{target}' (format parquet)")
            written = scalar(conn, f"select count(*) from read_parquet('{target}')")
            if written != rows:
                raise RuntimeError(
                    f"archive of {dataset} {month}: wrote {written} rows, expected {rows}; nothing was deleted"
                )
            with transaction(conn):
                conn.execute(f"delete from {dataset} where strftime({column}, '%Y-%m') = '{month}'")
                _record(conn, item, now)
    return done


def lake_rows(path: Path) -> int:
    with duckdb.connect() as conn:
        return int(scalar(conn, f"select count(*) from read_parquet('{path}')"))


def restore(settings: Settings, dataset: str, period: str) -> Archived:
    """Bring an archived period back where it was (idempotent: the period is replaced, not doubled)."""
    with connect(settings.build_db) as conn:
        conn.execute(GOVERNANCE_DDL)
        return _restore(conn, settings, dataset, period)


def restore_all(settings: Settings, dataset: str | None = None) -> list[Archived]:
    """Bring back every archived period (of one dataset, or of all), in one connection."""
    with connect(settings.build_db) as conn:
        conn.execute(GOVERNANCE_DDL)
        due = conn.execute(
            "select distinct dataset, period from governance.archive_log where restored_at is null "
            "and (? is null or dataset = ?) order by 1, 2",
            [dataset, dataset],
        ).fetchall()
        return [_restore(conn, settings, str(name), str(period)) for name, period in due]


def _restore(conn: duckdb.DuckDBPyConnection, settings: Settings, dataset: str, period: str) -> Archived:
    rows = conn.execute(
        "select location, rows, archived_at from governance.archive_log where dataset = ? and period = ? "
        "and restored_at is null order by archived_at desc limit 1",
        [dataset, period],
    ).fetchall()
    if not rows:
        raise FileNotFoundError(f"no archived period {period} of {dataset} (see `dataops archive list`)")
    location, count, archived_at = Path(rows[0][0]), int(rows[0][1]), rows[0][2]
    if dataset.startswith("lake."):
        _restore_lake(conn, settings, location, period, archived_at)
        _mark_restored(conn, dataset, period)
        _remove_emptied(location)  # last: until the log says restored, a re-run finds the folder it moves from
    else:
        column = _archive_column(conn, dataset, location)
        with transaction(conn):  # the rows and the log together: the log is how a re-run sees the change
            conn.execute(f"delete from {dataset} where strftime({column}, '%Y-%m') = ?", [period])
            conn.execute(f"insert into {dataset} by name select * from read_parquet('{location}')")
            _mark_restored(conn, dataset, period)
    return Archived(dataset, period, location, count)


def _restore_lake(
    conn: duckdb.DuckDBPyConnection, settings: Settings, location: Path, day: str, archived_at: dt.datetime
) -> None:
    """Put each archived file back at its place in the table; refuse before moving anything if a different file
    is there again. A file already home and identical to its archived copy was put back by a restore killed
    half-way: it counts as moved, so running the restore again completes it. First the ledger forgets that the
    versions a file goes back into were loaded or matched while the day was away, judged without it: the next
    build judges them again (forgetting costs at most a load; a judgement kept after the move would keep the day
    out of raw, docs/decisions/0103)."""
    if not location.is_dir():
        raise FileNotFoundError(f"the archive of {day} is not in {location}: nothing there to restore")
    table = settings.data_dir / location.parent.relative_to(settings.archive_dir)
    files = sorted(p for p in location.rglob("*") if p.is_file())
    moves = [(archived, _file_home(table, location, archived, day)) for archived in files]
    for archived, home in moves:
        if home.exists() and not filecmp.cmp(archived, home, shallow=False):
            raise FileExistsError(f"{home} exists again and differs from {archived}; compare them by hand")
    homes = {home.relative_to(table).parts[0] for _, home in moves}
    versions = sorted(p.removeprefix(lake.VERSION_PREFIX) for p in homes if p.startswith(lake.VERSION_PREFIX))
    forget_judged(conn, table.parent.name, table.name, versions, archived_at)
    for archived, home in moves:
        _put_back(archived, home)


def _file_home(table: Path, location: Path, archived: Path, day: str) -> Path:
    """Where an archived file came from: at its place relative to the table (a block's), or in the day folder of
    the version its archived folder is named after (``_lake_home``)."""
    inside = archived.relative_to(location)
    if location.name.startswith(BLOCK_PREFIX):
        return table / inside
    return _lake_home(table, location / inside.parts[0], day).joinpath(*inside.parts[1:])


def _put_back(archived: Path, home: Path) -> None:
    """Move one file home, whole or not at all: across file systems it is copied beside its place and renamed
    into it, then the archived copy goes. One already home (identical: checked before anything moved) counts as
    moved."""
    if home.exists():
        archived.unlink()
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(archived, home)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        partial = home.with_name(f".{home.name}.restoring")
        shutil.copy2(archived, partial)
        os.replace(partial, home)
        archived.unlink()


def _mark_restored(conn: duckdb.DuckDBPyConnection, dataset: str, period: str) -> None:
    """The log's entries of the period, restored now: how a re-run knows there is nothing left to restore."""
    conn.execute(
        "update governance.archive_log set restored_at = ? where dataset = ? and period = ? and restored_at is null",
        [dt.datetime.now(dt.UTC), dataset, period],
    )


def _remove_emptied(location: Path) -> None:
    """The archive's folders of a restored period, emptied by the restore."""
    for folder in sorted(location.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()  # only folders are left, emptied
    location.rmdir()


def _archive_column(conn: duckdb.DuckDBPyConnection, dataset: str, location: Path) -> str:
    from dataops.governance.metadata import load_manifest, published_datasets

    meta = published_datasets(load_manifest()).get(dataset)
    if meta is None or not meta.meta.get("archive_by"):
        raise ValueError(f"{dataset} declares no archive_by column")
    return str(meta.meta["archive_by"])


def archive_log(settings: Settings) -> list[tuple[object, ...]]:
    with connect(settings.build_db, read_only=True) as conn:
        conn.execute("select 1")
        try:
            return conn.execute(
                "select dataset, period, rows, archived_at, restored_at, location "
                "from governance.archive_log order by archived_at, dataset, period"
            ).fetchall()
        except duckdb.CatalogException:
            return []
