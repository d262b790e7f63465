"""The landing zone: immutable Parquet, one versioned dataset per table and landing run.

Layout: ``lake/raw/<system>/<table>/version=<extracted_at>-<run>/`` holds a hive-partitioned dataset
(``_partition=YYYY-MM-DD/<n>.parquet``, written block by block: ``VersionWriter``) and ``_manifest.json``, which
lists every business date the extract covered with its row count (a day without rows has no file, and is covered
all the same). A version is written aside and renamed into place, so a version that exists is complete; it is
never modified. A re-run lands a new version beside the old ones; readers take, for each day, the newest version
that covers it. Old versions go only through an explicit ``prune``.


By default (docs/decisions/0086) a version holds one file per block of days (``days=<first>..<last>.parquet``,
rows in day order) and its manifest maps each day with rows to its file: a landing of two years writes about a
hundred files instead of twelve thousand. Readers take a day's rows from its file by ``_partition``; a day of such
a file is archived only with the file's other days (``move_groups``). ``DATAOPS_LAKE_FILES=day`` writes the layout
before it, one file per day (``_partition=YYYY-MM-DD/``).

The layout before versioned datasets (``date=YYYY-MM-DD/part-<extracted_at>-<run>.parquet``, one file per
day and run) is still read: each such file is a version covering its one day.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

LINEAGE = ("_system", "_extracted_at", "_run_id", "_partition", "_record_hash", "_source")
# The lineage that differs between two extractions of the same records: what a re-run changes and nothing else.
PER_EXTRACTION = ("_extracted_at", "_run_id", "_source")
MANIFEST = "_manifest.json"
LAYOUTS = ("block", "day")  # one file per block of days (the default, 0086), or one per day of a version
VERSION_PREFIX = "version="
DAY_KEY = "_partition"  # the hive partition key of a version's dataset: the rows' business date


@dataclass(frozen=True)
class Version:
    """One landed extract of a table: a versioned dataset (or a legacy one-day file) and the days it covers."""

    name: str  # "<extracted_at>-<run>": sorts by extraction time
    path: Path  # the version's folder, or the legacy file
    rows: dict[dt.date, int]  # every covered day, with its rows (0: extracted, nothing there)
    columns: tuple[str, ...] = ()
    files: dict[dt.date, Path] = field(default_factory=dict, compare=False)  # block layout: each day's file

    @property
    def legacy(self) -> bool:
        return self.path.is_file()

    @property
    def shared(self) -> bool:
        """Whether a file of this version may hold several days (the block layout)."""
        return bool(self.files)

    @property
    def start(self) -> dt.date:
        return min(self.rows)

    @property
    def end(self) -> dt.date:
        return max(self.rows)

    def day_file(self, day: dt.date) -> Path | None:
        """The Parquet file of one covered day, or None when the day had no rows. In the block layout the file
        holds the other days of its block too (``shared``): read the day's rows by ``_partition``."""
        if self.legacy:
            return self.path
        if self.files:
            return self.files.get(day) if self.rows.get(day) else None
        folder = self.path / f"{DAY_KEY}={day.isoformat()}"
        return next(iter(sorted(folder.glob("*.parquet"))), None) if self.rows.get(day) else None


@dataclass(frozen=True)
class LandedDataset:
    version: Version
    rows: int
    bytes: int

    @property
    def path(self) -> Path:
        return self.version.path


def table_dir(lake: Path, system: str, table: str) -> Path:
    return lake / "raw" / system / table


def partition_dir(lake: Path, system: str, table: str, day: dt.date) -> Path:
    """The legacy one-day folder (``date=YYYY-MM-DD``) of a table."""
    return table_dir(lake, system, table) / f"date={day.isoformat()}"


def layout() -> str:
    """The layout new versions are written in: ``DATAOPS_LAKE_FILES``, read when a landing starts."""
    value = (os.environ.get("DATAOPS_LAKE_FILES") or LAYOUTS[0]).strip().lower()
    if value not in LAYOUTS:
        raise ValueError(f"DATAOPS_LAKE_FILES must be one of {', '.join(LAYOUTS)}, not {value!r}")
    return value


def _stamp(extracted_at: dt.datetime) -> str:
    return extracted_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%f")


class VersionWriter:
    """One new version of a table, written block by block and made visible only by ``commit``.

    The version's folder is written aside (a hidden ``.version=...tmp`` folder readers never look at); each
    ``write`` adds the files of its own days (a hive-partitioned dataset, one file per day), and ``commit``
    writes the manifest, listing every covered day (those without rows included, so that loading can replace
    a day that became empty), then renames the folder into place. A run killed between blocks leaves only the
    hidden folder: no version, whole or half, is visible, and the next run lands a version of its own.
    """

    def __init__(
        self, lake: Path, system: str, table: str, extracted_at: dt.datetime, run_id: str, files: str = "block"
    ) -> None:
        if files not in LAYOUTS:
            raise ValueError(f"a version's files are one of {LAYOUTS}, not {files!r}")
        self.system, self.table, self.run_id, self.extracted_at = system, table, run_id, extracted_at
        self.layout = files
        name = f"{_stamp(extracted_at)}-{run_id[:8]}"
        root = table_dir(lake, system, table)
        self.final = root / f"{VERSION_PREFIX}{name}"
        self.aside = root / f".{VERSION_PREFIX}{name}.tmp"
        root.mkdir(parents=True, exist_ok=True)
        remove_abandoned(root)
        # held while the version is written, taken before its folder exists: the kernel lets go when we die
        self.lock_path = root / f".{VERSION_PREFIX}{name}.lock"
        self._lock = self.lock_path.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        if self.aside.exists():
            shutil.rmtree(self.aside)
        self.aside.mkdir(parents=True)
        self.counts: dict[dt.date, int] = {}
        self.columns: list[str] = []
        self.blocks: list[tuple[str, str, str]] = []  # block layout: (first day, last day, file) with rows

    def write(self, days: list[dt.date], df: pl.DataFrame) -> None:
        """Add one block: the rows of ``days`` (keyed by ``_partition``), none of them written before."""
        counts = dict(df.group_by(DAY_KEY).len().iter_rows()) if df.height else {}
        unexpected = sorted(set(counts) - set(days))
        if unexpected:
            raise ValueError(f"{self.system}.{self.table}: rows dated {unexpected[:3]} are outside the landed days")
        again = sorted(set(days) & set(self.counts))
        if again:
            raise ValueError(f"{self.system}.{self.table}: days {again[:3]} are already in this version")
        if df.height and self.layout == "block":
            first, last = min(counts).isoformat(), max(counts).isoformat()
            name = f"days={first}..{last}.parquet"
            df.sort(DAY_KEY, maintain_order=True).write_parquet(self.aside / name)
            self.blocks.append((first, last, name))
        elif df.height:
            df.write_parquet(self.aside, partition_by=DAY_KEY)  # each file keeps the column too
        self.counts.update({day: int(counts.get(day, 0)) for day in days})
        self.columns += [c for c in df.columns if c not in self.columns]

    def commit(self) -> LandedDataset:
        """The manifest last, then the rename: the version appears whole, or not at all."""
        manifest: dict[str, object] = {
            "system": self.system,
            "table": self.table,
            "run_id": self.run_id,
            "extracted_at": self.extracted_at.isoformat(),
            "columns": self.columns,
            "rows": {day.isoformat(): n for day, n in sorted(self.counts.items())},
        }
        if self.layout == "block":
            manifest["files"] = [list(block) for block in self.blocks]
        (self.aside / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(self.aside, self.final)
        self._release()
        written = sum(p.stat().st_size for p in self.final.rglob("*.parquet"))
        return LandedDataset(_read_version(self.final), sum(self.counts.values()), written)

    def abandon(self) -> None:
        """Remove what was written (a block failed): nothing of it was ever visible."""
        shutil.rmtree(self.aside, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        self.lock_path.unlink(missing_ok=True)
        self._lock.close()


def remove_abandoned(table: Path) -> list[Path]:
    """Remove the hidden folders of versions whose writer died (killed between blocks): their writer lock is
    free. A writer takes its lock before it makes its folder, so a live writer's folder is never touched."""
    removed: list[Path] = []
    for lock_path in sorted(table.glob(f".{VERSION_PREFIX}*.lock")):
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            aside = lock_path.with_suffix(".tmp")
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)
                removed.append(aside)
            lock_path.unlink(missing_ok=True)
    return removed


def _read_version(folder: Path) -> Version:
    manifest = json.loads((folder / MANIFEST).read_text())
    rows = {dt.date.fromisoformat(day): int(n) for day, n in manifest["rows"].items()}
    name, columns = folder.name.removeprefix(VERSION_PREFIX), tuple(manifest.get("columns", ()))
    if "files" in manifest:  # the block layout: each day with rows is in its block's file
        files = _block_files(folder, manifest["files"], rows)
        covered = {day: n for day, n in rows.items() if n == 0 or day in files}
        return Version(name, folder, covered, columns, files)
    # a day pruned or archived away (its folder gone) is no longer covered by this version
    version = Version(name, folder, rows, columns)
    covered = {day: n for day, n in rows.items() if n == 0 or version.day_file(day) is not None}
    return Version(version.name, folder, covered, version.columns)


def _block_files(folder: Path, blocks: list[list[str]], rows: dict[dt.date, int]) -> dict[dt.date, Path]:
    """Each day with rows of a version in the block layout, with the file of its block (one that exists)."""
    files: dict[dt.date, Path] = {}
    for first, last, name in blocks:
        path = folder / name
        if not path.exists():
            continue
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        files.update((day, path) for day, n in rows.items() if n and start <= day <= end)
    return files


def all_versions(lake: Path, system: str, table: str) -> list[Version]:
    """Every complete version of a table, oldest first (legacy one-day files included)."""
    root = table_dir(lake, system, table)
    if not root.exists():
        return []
    found: list[Version] = []
    for folder in root.glob(f"{VERSION_PREFIX}*"):
        if (folder / MANIFEST).exists():
            version = _read_version(folder)
            if version.rows:
                found.append(version)
    for file in root.glob("date=*/part-*.parquet"):
        day = dt.date.fromisoformat(file.parent.name.removeprefix("date="))
        found.append(Version(file.stem.removeprefix("part-"), file, {day: -1}))
    return sorted(found, key=lambda v: v.name)


def versions(lake: Path, system: str, table: str, day: dt.date) -> list[Version]:
    """The complete versions covering one day, oldest first."""
    return [v for v in all_versions(lake, system, table) if day in v.rows]


def newest(lake: Path, system: str, table: str, day: dt.date) -> Version | None:
    found = versions(lake, system, table, day)
    return found[-1] if found else None


def newest_by_day(
    lake: Path, system: str, table: str, start: dt.date, end: dt.date, found: list[Version] | None = None
) -> dict[dt.date, Version]:
    """For each day of [start, end] that some version covers, the newest such version (of ``found``, a listing
    of the table's versions already made, oldest first, else of a new one)."""
    out: dict[dt.date, Version] = {}
    for version in all_versions(lake, system, table) if found is None else found:  # a newer one overwrites
        for day in version.rows:
            if start <= day <= end:
                out[day] = version
    return out


def day_changes(version: Version, loaded: list[Version]) -> dict[dt.date, str | None]:
    """For each day of a version the raw layer has not loaded: why loading it would change what the raw layer
    holds of that day, or None when it would not (``loaded``: the versions it loaded, oldest first).

    Unchanged: a loaded version of the day is newer (a reader takes each day's newest), or the newest loaded
    one holds the same rows, columns and records (``_record_hash`` leaves out each extraction's own lineage).
    The records are read only for days whose counts and columns agree, each version's files once."""
    newest_loaded: dict[dt.date, Version] = {}
    for old in loaded:
        newest_loaded |= dict.fromkeys(old.rows, old)
    changes: dict[dt.date, str | None] = {}
    compare: dict[str, tuple[Version, list[dt.date]]] = {}  # by the loaded version to compare with
    for day, rows in sorted(version.rows.items()):
        prev = newest_loaded.get(day)
        if prev is not None and prev.name > version.name:
            changes[day] = None
        elif prev is None or prev.legacy:
            changes[day] = "was never loaded"
        elif prev.rows[day] != rows or (rows and prev.columns != version.columns):
            changes[day] = "has other rows or columns than the loaded ones"
        elif rows:
            compare.setdefault(prev.name, (prev, []))[1].append(day)
        else:
            changes[day] = None
    if compare:
        mine = day_hashes(version, [day for _, days in compare.values() for day in days])
        for prev, days in compare.values():
            theirs = day_hashes(prev, days)
            changes |= {d: None if mine[d] == theirs[d] else "has other records than the loaded ones" for d in days}
    return dict(sorted(changes.items()))


def unjudged_changes(
    found: list[Version], judged: Collection[str], wanted: Callable[[Version], bool] = lambda _: True
) -> Iterator[tuple[Version, dict[dt.date, str | None]]]:
    """Each (wanted) version of a table's listing neither loaded nor matched (``judged``; legacy day files
    aside), with its ``day_changes`` against the judged ones: the one comparison the build's loads and the
    no-data check both make (docs/decisions/0103)."""
    held = [version for version in found if version.name in judged]
    for version in found:
        if not version.legacy and version.name not in judged and wanted(version):
            yield version, day_changes(version, held)


def day_hashes(version: Version, days: list[dt.date]) -> dict[dt.date, list[str]]:
    """Each day's record hashes, sorted, reading each of the version's files once. A block's file holds its
    other days too (docs/decisions/0086): only the wanted days' rows are read."""
    out: dict[dt.date, list[str]] = {day: [] for day in days}
    by_file: dict[Path, list[dt.date]] = {}
    for day in days:
        path = version.day_file(day)
        if path is not None:
            by_file.setdefault(path, []).append(day)
    for path, in_file in by_file.items():
        frame = pl.scan_parquet(path, hive_partitioning=False)
        if not version.shared:  # one day's file
            out[in_file[0]] = sorted(frame.select("_record_hash").collect()["_record_hash"].to_list())
            continue
        grouped = frame.filter(pl.col(DAY_KEY).is_in(in_file)).group_by(DAY_KEY).agg(pl.col("_record_hash").sort())
        out |= {day: list(hashes) for day, hashes in grouped.collect().iter_rows()}
    return out


def landed_days(lake: Path, system: str, table: str) -> list[dt.date]:
    return sorted({day for v in all_versions(lake, system, table) for day in v.rows})


def day_folders(lake: Path, system: str, table: str, day: dt.date) -> list[Path]:
    """Every folder holding a file of one day of a table (one per version; the legacy day folder once). A
    version in the block layout has no folder of a day alone: moving its file would move other days too."""
    folders: list[Path] = []
    for version in versions(lake, system, table, day):
        if version.shared and version.rows.get(day):
            raise ValueError(
                f"{system}.{table} {day}: version {version.name} holds this day in a file of several days "
                "(the block layout, decision 0086); a day of it cannot be moved alone"
            )
        file = version.day_file(day)
        if file is not None and file.parent not in folders:
            folders.append(file.parent)
    return folders


def move_groups(lake: Path, system: str, table: str) -> list[tuple[list[dt.date], list[Path]]]:
    """A table's landed days with rows, grouped as archiving must move them: (days, the paths holding them).

    A path is a version's day folder or a block's file. A group holds every version's copy of each of its
    days (a reader falling back to an older version's copy of a day would read it stale) and every day of each
    of its files (a file moves whole), so moving a group whole moves no day it does not name. In the day layout
    each group is one day.
    """
    holds: dict[Path, set[dt.date]] = {}
    for version in all_versions(lake, system, table):
        for day in version.rows:
            file = version.day_file(day)
            if file is not None:
                holds.setdefault(file if version.shared else file.parent, set()).add(day)
    parent: dict[dt.date, dt.date] = {}

    def root(day: dt.date) -> dt.date:
        while parent.setdefault(day, day) != day:
            day = parent[day]
        return day

    for days in holds.values():
        first, *rest = sorted(days)
        for day in rest:
            parent[root(day)] = root(first)
    groups: dict[dt.date, tuple[set[dt.date], list[Path]]] = {}
    for path, days in sorted(holds.items()):
        group = groups.setdefault(root(min(days)), (set(), []))
        group[0].update(days)
        group[1].append(path)
    return sorted((sorted(days), paths) for days, paths in groups.values())


def _drop_days(version: Version, days: set[dt.date]) -> list[Path]:
    """Remove days from a version: the manifest first (readers then no longer see them), then the files."""
    if version.legacy:
        version.path.unlink()
        return [version.path]
    manifest = json.loads((version.path / MANIFEST).read_text())
    manifest["rows"] = {d: n for d, n in manifest["rows"].items() if dt.date.fromisoformat(d) not in days}
    removed = [f for day in sorted(days) if (f := version.day_file(day)) is not None]
    if version.shared:  # a block's file goes with its last covered day; until then the manifest hides the days
        kept = {version.files[day] for day in version.files if day not in days}
        removed = sorted(set(removed) - kept)
    if not manifest["rows"]:
        shutil.rmtree(version.path)
        return removed or [version.path]
    staged = version.path / f".{MANIFEST}.tmp"
    staged.write_text(json.dumps(manifest, indent=1))
    os.replace(staged, version.path / MANIFEST)
    for file in removed:
        if version.shared:
            file.unlink()
        else:
            shutil.rmtree(file.parent)
    return removed


def prunable(lake: Path, keep: int = 1) -> list[tuple[Version, dt.date]]:
    """(version, day) pairs older than the newest ``keep`` versions of their day, for every table."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest version is what the raw layer is built from")
    doomed: list[tuple[Version, dt.date]] = []
    for table in sorted(p for p in (lake / "raw").glob("*/*") if p.is_dir()):
        by_day: dict[dt.date, list[Version]] = {}
        for version in all_versions(lake, table.parent.name, table.name):
            for day in version.rows:
                by_day.setdefault(day, []).append(version)
        for day, found in sorted(by_day.items()):
            doomed += [(old, day) for old in found[:-keep]]
    return doomed


def prune(lake: Path, keep: int = 1) -> list[tuple[Version, dt.date]]:
    """Remove every day's versions but the newest ``keep``; returns what was removed."""
    doomed = prunable(lake, keep)
    for table in sorted(p for p in (lake / "raw").glob("*/*") if p.is_dir()):
        remove_abandoned(table)
    by_version: dict[Path, tuple[Version, set[dt.date]]] = {}
    for version, day in doomed:
        by_version.setdefault(version.path, (version, set()))[1].add(day)
    for version, days in by_version.values():
        _drop_days(version, days)
    return doomed
