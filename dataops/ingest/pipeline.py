"""One table's ingestion over a range of business dates: extract, land, then load from the landing zone.

The range is extracted in blocks of days whose rows fit a budget (``IngestOptions.block_rows``) and landed as
one versioned dataset, each block written before the next is read; validation and the load read it back in
blocks too, in one transaction (docs/decisions/0064), so memory is bounded by the budget and not the window.
Loading always reads back the newest landed version of each day, never the in-memory extract, so the normal path
and a rebuild from the lake are the same code, and a crash between landing and loading is repaired by simply
running again. Landing and loading can run apart (the platform's landing run, then its build run):
``load_pending`` loads whatever was landed and not yet loaded (docs/decisions/0035).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import duckdb
import polars as pl

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.ingest import lake
from dataops.ingest.connectors import DAY, SHAPE, Extractor, days
from dataops.ingest.connectors.accounting import listed_file
from dataops.ingest.contract import ContractResult, apply_contract, check_shape
from dataops.ingest.lake import LINEAGE
from dataops.ingest.ledger import (
    Window,
    accounted,
    loaded_versions,
    record_load,
    record_matched,
)
from dataops.ingest.load import LoadResult, load_range
from quality.contracts import CONTRACTS, Contract

# The rows one block of days may hold, landing or loading (docs/decisions/0064): what bounds ingestion's
# memory, whatever the window. The platform's setting (DATAOPS_INGEST_BLOCK_ROWS) defaults to this.
BLOCK_ROWS = 250_000


@dataclass(frozen=True)
class IngestOptions:
    max_quarantine_rate: float = 0.10
    min_quarantined: int = 3  # a partition fails only past the rate *and* more than this many rows
    limits: Limits = field(default_factory=Limits)
    block_rows: int = BLOCK_ROWS


@dataclass
class IngestReport:
    table: str
    start: dt.date
    end: dt.date
    landed_rows: int = 0
    landed_bytes: int = 0
    landed_files: list[str] = field(default_factory=list)  # the landed versions (folders), relative
    loaded_rows: int = 0
    quarantined_rows: int = 0
    orphans: int = 0
    released: int = 0
    watermark: str | None = None
    extra_columns: list[str] = field(default_factory=list)
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    preview: pl.DataFrame | None = None
    per_partition: dict[dt.date, tuple[int, int]] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)  # the windows loaded (several when days between are not landed)

    def __post_init__(self) -> None:
        self.windows = self.windows or [(self.start, self.end)]

    @property
    def partitions(self) -> int:
        return sum((end - start).days + 1 for start, end in self.windows)

    @property
    def loaded_days(self) -> set[dt.date]:
        """Every business date loaded (the windows' days)."""
        return {day for start, end in self.windows for day in days(start, end)}


_hashing: tuple[int, duckdb.DuckDBPyConnection] | None = None
_hashing_lock = threading.Lock()


def _hashing_db() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB for record hashes. Starting a database costs about 33 ms of CPU (a
    cursor on a running one about 1 ms), and a window landed in blocks hashes once per block and table
    (docs/testing.md). A forked child starts its own: a database's threads do not survive a fork."""
    global _hashing
    with _hashing_lock:
        if _hashing is None or _hashing[0] != os.getpid():
            _hashing = (os.getpid(), duckdb.connect())
        return _hashing[1]


def _record_hashes(encoded: pl.Series) -> pl.Series:
    """sha256 of each record's JSON (its first 32 hex digits), computed in DuckDB: stable across library
    versions, unlike polars' row hash, and without a Python call per row. Each call has a connection (a
    cursor) of its own on the process's database, so threads may hash at once."""
    frame = pl.DataFrame({"record": encoded})
    with _hashing_db().cursor() as conn:
        conn.register("records", frame)
        hashed = conn.sql("select left(sha256(record), 32) as h from records").pl()
        conn.unregister("records")
    return hashed["h"]


def with_lineage(
    df: pl.DataFrame,
    system: str,
    day: dt.date | None,
    extracted_at: dt.datetime,
    run_id: str,
    source: str,
    unhashed: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Add the lineage columns every landed row carries.

    The business date (``_partition``) is the connector's ``__day`` column when the frame has one, else
    ``day``. ``_record_hash`` covers the record as the source owns it: not the ``unhashed`` columns this
    platform writes back into the source, so a record the write-back touched keeps its hash
    (docs/decisions/0020).
    """
    partition = pl.col(DAY) if DAY in df.columns else pl.lit(day, dtype=pl.Date)
    if "__file" in df.columns:
        df = df.rename({"__file": "_source_file"})
        source_expr = pl.col("_source_file")
    else:
        source_expr = pl.lit(source)
    record_hash = _hashes(df, unhashed)
    out = df.with_columns(
        pl.lit(system).alias("_system"),
        pl.lit(extracted_at).cast(pl.Datetime("us", "UTC")).alias("_extracted_at"),
        pl.lit(run_id).alias("_run_id"),
        partition.cast(pl.Date).alias("_partition"),
        record_hash.alias("_record_hash"),
        source_expr.cast(pl.String).alias("_source"),
    )
    return out.drop("_source_file", DAY, SHAPE, strict=False)


def _hashes(df: pl.DataFrame, unhashed: tuple[str, ...]) -> pl.Series:
    """Each record's hash over its own columns: all of the frame's, or those its ``__columns`` lists."""
    lineage = ("_source_file", DAY, SHAPE)
    if df.height == 0:
        return pl.Series([], dtype=pl.String)
    shapes = df[SHAPE].unique().to_list() if SHAPE in df.columns else [None]
    numbered = df.with_row_index("__i")
    parts = []
    for shape in shapes:
        rows = numbered if shape is None else numbered.filter(pl.col(SHAPE) == shape)
        names = json.loads(shape) if shape is not None else df.columns
        payload = [c for c in names if c not in lineage and c not in unhashed]
        json_rows = rows.select(pl.struct(payload).struct.json_encode()) if payload else rows.select(pl.lit(""))
        parts.append(pl.DataFrame({"__i": rows["__i"], "encoded": json_rows.to_series()}))
    encoded: pl.Series = pl.concat(parts).sort("__i")["encoded"]
    return encoded.zip_with(encoded == "", _record_hashes(encoded)).alias("_record_hash")


def land(
    settings: Settings,
    contract: Contract,
    extractor: Extractor,
    start: dt.date,
    end: dt.date,
    run_id: str | None = None,
    report: IngestReport | None = None,
    block_rows: int = BLOCK_ROWS,
) -> IngestReport:
    """Extract [start, end] (inclusive) in blocks of days and land it as one new version of the table.

    Each block is extracted, given its lineage and written into the version before the next is read, so memory
    holds one block, not the window. The version appears only once every block is written (a failure, or a
    kill, between blocks leaves none)."""
    run_id = run_id or uuid.uuid4().hex
    report = report or IngestReport(contract.name, start, end)
    extracted_at = dt.datetime.now(dt.UTC)
    source = f"{contract.system}:{contract.table}"
    prepare = getattr(extractor, "prepare", None)
    if prepare is not None:  # a source that reads a range in one job (the CRM's bulk export) reads it so
        prepare([contract.table], start, end)
    files = lake.layout()
    writer = lake.VersionWriter(settings.lake_dir, contract.system, contract.table, extracted_at, run_id, files)
    try:
        first, span, busiest = start, 1, 0
        while first <= end:
            last = min(end, first + dt.timedelta(days=span - 1))
            frame = extractor.extract(contract.table, first, last)
            df = with_lineage(frame, contract.system, None, extracted_at, run_id, source, contract.written_back)
            del frame
            writer.write(days(first, last), df)
            if df.height:
                busiest = max(busiest, int(df.group_by("_partition").len()["len"].max()))  # type: ignore[arg-type]
            span = next_span(block_rows, busiest, span)
            first = last + dt.timedelta(days=1)
    except BaseException:
        writer.abandon()
        raise
    landed = writer.commit()
    report.landed_rows += landed.rows
    report.landed_bytes += landed.bytes
    report.landed_files.append(str(landed.path.relative_to(settings.data_dir)))
    return report


# A block may grow at once to this fraction of the budget at the busiest day read so far, by at most
# JUMP_GROWTH times the last block's days; past it, a block has at most twice the days of the last
# (docs/decisions/0070).
JUMP_FRACTION = 8
JUMP_GROWTH = 16


def next_span(block_rows: int, busiest: int, span: int) -> int:
    """The days of the next block: as many as the budget holds at the busiest day read so far, and at most
    twice the last block's (a source's first days can be far quieter than its later ones) unless that many
    days still fill no more than an eighth of the budget: then up to sixteen times the last block's days.
    A window far below the budget is then a few blocks, not one per doubling, and a quiet first day does not
    size a whole long window (a source whose first days are nearly empty, as payments before any invoice is
    due). One day at least: a single day larger than the budget is a block of its own."""
    if not busiest:
        return 2 * span
    jump = min(JUMP_GROWTH * span, block_rows // (JUMP_FRACTION * busiest))
    return max(1, min(block_rows // busiest, max(2 * span, jump)))


def landing_order(
    contracts: list[Contract], extractor_for: Callable[[str], Extractor], start: dt.date, end: dt.date
) -> list[Contract]:
    """Start the slow reads of the window that a source can prepare by itself (the CRM's bulk export jobs:
    ``prepare``), and return the tables in the order to land them: those of the other sources first, so that
    the prepared reads run meanwhile."""
    prepared: set[str] = set()
    for system in sorted({c.system for c in contracts}):
        try:
            prepare = getattr(extractor_for(system), "prepare", None)
        except Exception:  # a source that cannot be reached fails its own tables' landing, as before
            continue
        if prepare is not None:
            prepare([c.table for c in contracts if c.system == system], start, end)
            prepared.add(system)
    return sorted(contracts, key=lambda c: c.system in prepared)


def ingest(
    settings: Settings,
    contract: Contract,
    extractor: Extractor,
    start: dt.date,
    end: dt.date,
    run_id: str | None = None,
    options: IngestOptions | None = None,
    after_landing: Callable[[], None] | None = None,
) -> IngestReport:
    """Extract [start, end] (inclusive), land it as a new version, then load the window from the lake."""
    run_id = run_id or uuid.uuid4().hex
    block_rows = (options or IngestOptions()).block_rows
    report = land(settings, contract, extractor, start, end, run_id, block_rows=block_rows)
    if after_landing is not None:
        after_landing()
    load_from_lake(settings, contract, start, end, options, report, extractor.watermark_column, run_id)
    return report


LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "_system": pl.String(),
    "_extracted_at": pl.Datetime("us", "UTC"),
    "_run_id": pl.String(),
    "_partition": pl.Date(),
    "_record_hash": pl.String(),
    "_source": pl.String(),
}


def _shape(contract: Contract, version: lake.Version, settings: Settings, landed: pl.DataFrame) -> list[str]:
    """The version's unknown columns, or the contract's error naming the source (file, API object or table),
    business date and landed copy of the version's first day with rows."""
    columns = list(version.columns) if not version.legacy else list(pl.read_parquet_schema(version.path))
    if not any(c not in LINEAGE for c in columns):  # an empty API window has no columns
        return []
    with_rows = sorted(day for day, rows in version.rows.items() if rows != 0)
    if not with_rows:
        return []
    first = with_rows[0]  # named: the first day that has the shape
    copy = (version.day_file(first) or version.path).relative_to(settings.data_dir)
    on_day = landed.filter(pl.col("_partition") == first) if "_partition" in landed.columns else landed
    source = f"{source_name(settings, contract, on_day, first)}, landed as {copy}"
    # an alias applies from its effective date: judged at the newest day the version holds rows for
    return check_shape(contract, columns, source, with_rows[-1])


def _payload(df: pl.DataFrame, own: list[str]) -> pl.Expr:
    """Each row's original payload as JSON: only the columns with a value on its business day, by name.

    A version landed over a range holds every column of the range on each day (a renamed or added column is
    empty on the days before, and the columns' order is the range's), so the columns of a day are those it
    has values in, in name order: a row's payload is then the same whether its day was landed alone or in a
    range.
    """
    if not own:
        return pl.lit(None, dtype=pl.String).alias("_payload")
    present = df.group_by("_partition").agg(pl.col(own).is_not_null().any())
    by_columns: dict[tuple[str, ...], list[dt.date]] = {}
    for row in present.iter_rows(named=True):
        by_columns.setdefault(tuple(sorted(c for c in own if row[c])), []).append(row["_partition"])
    payload = pl.lit(None, dtype=pl.String)
    for columns, on in by_columns.items():
        encoded = (
            pl.struct([pl.col(c).cast(pl.String) for c in columns]).struct.json_encode()
            if columns
            else pl.lit("{}", dtype=pl.String)
        )
        payload = pl.when(pl.col("_partition").is_in(on)).then(encoded).otherwise(payload)
    return payload.alias("_payload")


def newest_landed(
    settings: Settings, contract: Contract, start: dt.date, end: dt.date, found: list[lake.Version] | None = None
) -> dict[dt.date, lake.Version]:
    """The newest version of each day in the range (of ``found``, a listing already made); every day must have
    one."""
    newest = lake.newest_by_day(settings.lake_dir, contract.system, contract.table, start, end, found)
    missing = [day for day in days(start, end) if day not in newest]
    if missing:
        raise FileNotFoundError(
            f"nothing landed for {contract.name} on {missing[0]}"
            + (f" (and {len(missing) - 1} more days)" if len(missing) > 1 else "")
            + f" under {settings.lake_dir}: ingest it first"
        )
    return newest


def load_blocks(newest: dict[dt.date, lake.Version], block_rows: int) -> list[Window]:
    """The window's days (``newest``, in order) in blocks whose landed rows, as their manifests count them, fit
    the budget; a day larger than the budget is a block of its own."""
    blocks: list[Window] = []
    held = 0
    for day in sorted(newest):
        rows = max(newest[day].rows[day], 0)  # a legacy file's rows are not counted: -1
        if blocks and held + rows <= block_rows and day == blocks[-1][1] + dt.timedelta(days=1):
            blocks[-1], held = (blocks[-1][0], day), held + rows
        else:
            blocks.append((day, day))
            held = rows
    return blocks


def _read_files(files: list[Path], only: list[dt.date] | None = None) -> pl.DataFrame:
    """Landed files in order, as one frame: a version landed in blocks has the columns of each block's days
    (a column the source added later is absent before), so runs of files of one schema are read together.
    ``only``: the days to keep, filtered as the files are read (a block's file holds days not wanted here)."""
    runs: list[tuple[pl.Schema, list[Path]]] = []
    for file in files:
        schema = pl.read_parquet_schema(file)
        if runs and runs[-1][0] == schema:
            runs[-1][1].append(file)
        else:
            runs.append((pl.Schema(schema), [file]))
    if only is None:
        frames = [pl.read_parquet(group, hive_partitioning=False) for _, group in runs]
    else:
        wanted = pl.col(lake.DAY_KEY).is_in(only)
        frames = [pl.scan_parquet(group, hive_partitioning=False).filter(wanted).collect() for _, group in runs]
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def read_landed(
    settings: Settings,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    newest: dict[dt.date, lake.Version] | None = None,
) -> tuple[pl.DataFrame, list[str], list[str], list[lake.Version]]:
    """The newest version of each day in the range, its source columns, unknown extras, and the versions read.
    A load in blocks passes the window's ``newest``, found once, instead of every block reading the manifests."""
    if newest is None:
        newest = newest_landed(settings, contract, start, end)
    else:
        newest = {day: version for day, version in newest.items() if start <= day <= end}
    by_version: dict[str, tuple[lake.Version, list[dt.date]]] = {}
    for day, version in newest.items():
        by_version.setdefault(version.name, (version, []))[1].append(day)
    frames, source_columns, extras = [], [], set()
    for version, covered in by_version.values():
        files = sorted({f for day in covered if (f := version.day_file(day)) is not None})
        if not files:
            continue
        # a block's file, or a legacy version's one file, holds days not read here
        df = _read_files(files, covered if version.shared or version.legacy else None)
        version_extras = _shape(contract, version, settings, df)
        extras.update(version_extras)
        # The version's unknown columns that these files hold: a version's manifest lists the columns of every
        # block it landed, a block without rows included (it writes no file), and of every file, while the days
        # read may be only some of them; a column the source added or renamed later is then in no file read.
        file_extras = [c for c in version_extras if c in df.columns]
        # Unknown columns are kept as JSON in _extra: the version's own, on the rows that have a value in one
        # (a version landed over days before and after a source added a column holds it empty on the first).
        # Each row's original payload goes to _payload with the columns its day had (see _payload).
        own = [c for c in df.columns if c not in LINEAGE]
        df = df.with_columns(
            pl.when(pl.any_horizontal(pl.col(file_extras).is_not_null()))
            .then(pl.struct(file_extras).struct.json_encode())
            .alias("_extra")
            if file_extras
            else pl.lit(None, dtype=pl.String).alias("_extra"),
            _payload(df, own),
        )
        for column in own:
            if column not in source_columns:
                source_columns.append(column)
        frames.append(df)
    if not frames:  # no rows on any day of the window: the lineage alone, typed as landed
        frames = [pl.DataFrame(schema=LINEAGE_SCHEMA)]
    kept = (*LINEAGE, "_extra", "_payload")
    batch = pl.concat(
        [f.with_columns(pl.col(c).cast(pl.String) for c in f.columns if c not in kept) for f in frames],
        how="diagonal_relaxed",
    )
    return batch, source_columns, sorted(extras), [v for v, _ in by_version.values()]


def source_name(settings: Settings, contract: Contract, landed: pl.DataFrame, day: dt.date) -> str:
    """Where a landed partition came from, as an operator finds it: the export file, the API object or the
    database table, with its business date (error messages name this, not the landed copy)."""
    if contract.system == "accounting":
        files = [settings.accounting_exports / f for f in landed["_source"].unique().sort().to_list()]
        listed = listed_file(settings.accounting_exports, day, contract.table)  # an empty day's rows name none
        found = ", ".join(map(str, files or [listed or settings.accounting_exports / day.isoformat()]))
        return f"{found} (accounting export, business date {day})"
    if contract.system == "crm":
        return f"CRM API object {contract.table} (business date {day})"
    return f"ERP table {contract.table} in {settings.erp_db} (business date {day})"


def load_from_lake(
    settings: Settings,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    options: IngestOptions | None = None,
    report: IngestReport | None = None,
    watermark_column: str | None = None,
    run_id: str | None = None,
    settled: Collection[str] = (),
) -> IngestReport:
    """Replace the window's raw rows with the newest landed version of each of its days, and record the
    load (and every version now loaded) in the ledger, in the same transaction.

    Now loaded: each version inside the window, read or shadowed by a newer one read, and each version of
    ``settled``, whose days outside the window hold what raw holds (``pending_windows``). Both from the one
    listing the rows are read by: a version landed while the load runs waits for the next build."""
    options = options or IngestOptions()
    report = report or IngestReport(contract.name, start, end)
    landed = lake.all_versions(settings.lake_dir, contract.system, contract.table)
    newest = newest_landed(settings, contract, start, end, landed)
    blocks = load_blocks(newest, options.block_rows)
    covered = [
        (v.name, v.start, v.end)
        for v in landed
        if not v.legacy and ((start <= v.start and v.end <= end) or v.name in settled)
    ]
    seen = _Seen()

    def reread(frame: pl.DataFrame) -> ContractResult:
        return apply_contract(contract, frame, [c for c in frame.columns if c not in LINEAGE])

    def record(conn: duckdb.DuckDBPyConnection) -> None:
        done = loaded_versions(conn, contract.system, contract.table)
        versions = [v for v in covered if v[0] not in done]
        record_load(conn, contract.system, contract.table, (start, end), versions, run_id)

    def results() -> Iterator[ContractResult]:
        for first, last in blocks:
            batch, source_columns, extras, read = read_landed(settings, contract, first, last, newest)
            result = apply_contract(contract, batch, source_columns)
            del batch
            seen.add(result, extras, read, watermark_column)
            yield result

    with connect(settings.build_db, limits=options.limits) as conn:
        loaded: LoadResult = load_range(
            conn,
            contract,
            start,
            end,
            results(),
            options.max_quarantine_rate,
            options.min_quarantined,
            reread,
            record,
            staged=len(blocks) > 1,
        )
    report.loaded_rows = loaded.loaded
    report.quarantined_rows = loaded.quarantined
    report.orphans = loaded.orphans
    report.released = loaded.released
    report.per_partition = loaded.per_partition
    report.extra_columns = sorted(seen.extras)
    report.top_reasons = sorted(seen.reasons.items(), key=lambda kv: -kv[1])[:5]
    report.watermark = str(seen.watermark) if seen.watermark is not None else None
    report.preview = seen.preview
    if not report.landed_files:
        report.landed_files = [str(v.path.relative_to(settings.data_dir)) for v in seen.read.values()]
    return report


@dataclass
class _Seen:
    """What a load's report says of its blocks, gathered as they pass: nothing of their rows is kept but the
    preview's."""

    extras: set[str] = field(default_factory=set)
    reasons: dict[str, int] = field(default_factory=dict)
    watermark: object = None
    preview: pl.DataFrame | None = None
    read: dict[str, lake.Version] = field(default_factory=dict)

    def add(
        self, result: ContractResult, extras: list[str], read: list[lake.Version], watermark_column: str | None
    ) -> None:
        self.extras.update(extras)
        for reason, count in result.top_reasons(n=None):
            self.reasons[reason] = self.reasons.get(reason, 0) + count
        self.read.update((v.name, v) for v in read)
        valid = result.valid
        column = watermark_column if watermark_column and watermark_column in valid.columns else "_partition"
        if valid.height:
            top = valid[column].max()
            self.watermark = top if self.watermark is None or top > self.watermark else self.watermark  # type: ignore[operator]
        if self.preview is None or self.preview.height < 5:
            head = valid.drop("_payload").head(5)
            self.preview = head if self.preview is None else pl.concat([self.preview, head]).head(5)


def pending_windows(settings: Settings, contract: Contract, conn: duckdb.DuckDBPyConnection) -> list[Pending]:
    """The windows of the days whose landed versions the raw layer has not loaded yet and would change
    (empty: nothing new); the versions that would change nothing are recorded as matched, once.

    A day landed again with the very records the raw layer holds waits for no load (``lake.day_changes``): a
    landing that brought nothing new starts no build (docs/decisions/0057), and the next build, of another day,
    would otherwise span every day between the two (docs/decisions/0101). Its version is matched in the ledger,
    so that no later build or no-data check reads its records again (0103). That holds for a day loaded and not
    built yet too (its run halted by a volume breaker, say): the next run's breakers judge every day of their
    table loaded and not built, whatever it loads (docs/decisions/0102). One window, the span of the waiting
    days, unless a day inside it was never landed at all (landing runs of days 6 and 8 finished, day 7's not
    yet): the span is then cut at such days, and each part that holds a waiting day is a window of its own
    (docs/decisions/0036). Each window's every day is landed, as a load needs; the day left out is loaded by
    the build after its own landing.
    """
    every = lake.all_versions(settings.lake_dir, contract.system, contract.table)
    changed = _changed_days(every, conn, contract)
    matched = [name for name, changes in changed.items() if not changes]
    if matched:
        record_matched(conn, contract.system, contract.table, matched)
    waiting = {day for changes in changed.values() for day in changes}
    if not waiting:
        return []
    landed = {day for v in every for day in v.rows}
    windows: list[Pending] = []
    for start, end in contiguous(sorted(d for d in days(min(waiting), max(waiting)) if d in landed)):
        if any(start <= day <= end for day in waiting):
            settled = tuple(name for name, changes in changed.items() if changes and start <= max(changes) <= end)
            windows.append(Pending(start, end, settled))
    return windows


class Pending(NamedTuple):
    """A window to load, and the versions reaching outside it that its load settles (a range landed again
    with one day changed, say): the last of their changed days lies in it. The windows load in order and a
    failed one stops the rest, so their other changed days are loaded by then, and their other days hold what
    raw holds."""

    start: dt.date
    end: dt.date
    settled: tuple[str, ...] = ()


def _changed_days(
    every: list[lake.Version], conn: duckdb.DuckDBPyConnection, contract: Contract
) -> dict[str, set[dt.date]]:
    """For each version neither loaded nor matched, the days a load of it would change (none: matched now).

    Compared with the loaded and the matched versions alike: a matched version holds, on each of its days, what
    raw holds, or a newer loaded one shadows it (docs/decisions/0103); a version named older than a matched one
    (its extraction started first, it was committed after) is shadowed by it, as the reader takes the newest."""
    judged = accounted(conn, contract.system, contract.table).get(contract.name, set())
    return {
        version.name: {day for day, change in changes.items() if change is not None}
        for version, changes in lake.unjudged_changes(every, judged)
    }


def load_pending(
    settings: Settings,
    contract: Contract,
    options: IngestOptions | None = None,
    run_id: str | None = None,
    watermark_column: str | None = None,
) -> IngestReport | None:
    """Load every day of the table that some version landed since the last load (None: nothing new), one
    load (one transaction, one ledger entry) per pending window."""
    options = options or IngestOptions()
    with connect(settings.build_db, limits=options.limits) as conn:
        windows = pending_windows(settings, contract, conn)
    if not windows:
        return None
    reports = [
        load_from_lake(
            settings,
            contract,
            window.start,
            window.end,
            options,
            IngestReport(contract.name, window.start, window.end),
            watermark_column,
            run_id,
            window.settled,
        )
        for window in windows
    ]
    return merged(reports)


def merged(reports: list[IngestReport]) -> IngestReport:
    """One table's loads of several windows as one report: its span, the windows, their sums."""
    if len(reports) == 1:
        return reports[0]
    first, last = reports[0], reports[-1]
    reasons: dict[str, int] = {}
    for report in reports:
        for reason, count in report.top_reasons:
            reasons[reason] = reasons.get(reason, 0) + count
    watermarks = [r.watermark for r in reports if r.watermark]
    return IngestReport(
        first.table,
        first.start,
        last.end,
        landed_files=[f for r in reports for f in r.landed_files],
        loaded_rows=sum(r.loaded_rows for r in reports),
        quarantined_rows=sum(r.quarantined_rows for r in reports),
        orphans=sum(r.orphans for r in reports),
        released=sum(r.released for r in reports),
        watermark=max(watermarks) if watermarks else None,
        extra_columns=sorted({c for r in reports for c in r.extra_columns}),
        top_reasons=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
        preview=last.preview,
        per_partition={day: n for r in reports for day, n in r.per_partition.items()},
        windows=[w for r in reports for w in r.windows],
    )


def rebuild_raw(
    settings: Settings, options: IngestOptions | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Rebuild the whole raw layer from the landing zone alone (parents before children); the next build then
    recomputes the models over every day it loaded."""
    counts: dict[str, int] = {}
    with connect(settings.build_db) as conn:
        conn.execute("drop schema if exists raw cascade")
        conn.execute("drop schema if exists quarantine cascade")
        conn.execute("drop table if exists pipeline.loaded_versions")
        conn.execute("drop table if exists pipeline.matched_versions")
    for contract in CONTRACTS.values():
        landed = lake.landed_days(settings.lake_dir, contract.system, contract.table)
        if not landed:
            continue
        if progress:
            progress(contract.name)
        for start, end in contiguous(landed):
            report = load_from_lake(settings, contract, start, end, options)
            counts[contract.name] = counts.get(contract.name, 0) + report.loaded_rows
    return counts


def contiguous(sorted_days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted_days:
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
