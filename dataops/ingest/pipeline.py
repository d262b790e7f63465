"""One table's ingestion over a range of business dates: extract, land, then load from the landing zone.

Loading always reads back the newest landed version of each partition, never the in-memory extract, so
the normal path and a rebuild from the lake are the same code, and a crash between landing and loading
is repaired by simply running again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.ingest import lake
from dataops.ingest.connectors import Extractor, days
from dataops.ingest.connectors.accounting import listed_file
from dataops.ingest.contract import ContractResult, apply_contract, check_shape
from dataops.ingest.lake import LINEAGE
from dataops.ingest.load import LoadResult, load_range
from quality.contracts import CONTRACTS, Contract


@dataclass(frozen=True)
class IngestOptions:
    max_quarantine_rate: float = 0.10
    min_quarantined: int = 3  # a partition fails only past the rate *and* more than this many rows
    limits: Limits = field(default_factory=Limits)


@dataclass
class IngestReport:
    table: str
    start: dt.date
    end: dt.date
    landed_rows: int = 0
    landed_bytes: int = 0
    landed_files: list[str] = field(default_factory=list)
    loaded_rows: int = 0
    quarantined_rows: int = 0
    orphans: int = 0
    released: int = 0
    watermark: str | None = None
    extra_columns: list[str] = field(default_factory=list)
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    preview: pl.DataFrame | None = None
    per_partition: dict[dt.date, tuple[int, int]] = field(default_factory=dict)

    @property
    def partitions(self) -> int:
        return (self.end - self.start).days + 1


def with_lineage(
    df: pl.DataFrame,
    system: str,
    day: dt.date,
    extracted_at: dt.datetime,
    run_id: str,
    source: str,
    unhashed: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Add the lineage columns every landed row carries.

    ``_record_hash`` covers the record as the source owns it: not the ``unhashed`` columns this platform
    writes back into the source, so a record the write-back touched keeps its hash (docs/decisions/0020).
    """
    if "__file" in df.columns:
        source_expr = pl.col("__file")
        df = df.rename({"__file": "_source_file"})
        source_expr = pl.col("_source_file")
    else:
        source_expr = pl.lit(source)
    payload_cols = [c for c in df.columns if c != "_source_file" and c not in unhashed]
    if df.height and payload_cols:
        # sha256 of the record as JSON: stable across library versions, unlike polars' row hash
        encoded = df.select(pl.struct(payload_cols).struct.json_encode()).to_series().to_list()
        record_hash = pl.Series([hashlib.sha256(e.encode()).hexdigest()[:32] for e in encoded], dtype=pl.String)
    else:
        record_hash = pl.Series([""] * df.height, dtype=pl.String)
    out = df.with_columns(
        pl.lit(system).alias("_system"),
        pl.lit(extracted_at).cast(pl.Datetime("us", "UTC")).alias("_extracted_at"),
        pl.lit(run_id).alias("_run_id"),
        pl.lit(day).alias("_partition"),
        record_hash.alias("_record_hash"),
        source_expr.cast(pl.String).alias("_source"),
    )
    return out.drop("_source_file", strict=False)


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
    """Extract [start, end] (inclusive), land each day as a new version, then load from the lake."""
    run_id = run_id or uuid.uuid4().hex
    extracted_at = dt.datetime.now(dt.UTC)
    frames = extractor.extract(contract.table, start, end)
    report = IngestReport(contract.name, start, end)
    for day in days(start, end):
        df = with_lineage(
            frames[day],
            contract.system,
            day,
            extracted_at,
            run_id,
            source=f"{contract.system}:{contract.table}",
            unhashed=contract.written_back,
        )
        landed = lake.land(settings.lake_dir, contract.system, contract.table, day, df, extracted_at, run_id)
        report.landed_rows += landed.rows
        report.landed_bytes += landed.bytes
        report.landed_files.append(str(landed.path.relative_to(settings.data_dir)))
    if after_landing is not None:
        after_landing()
    load_from_lake(settings, contract, start, end, options, report, extractor.watermark_column)
    return report


def read_landed(
    settings: Settings, contract: Contract, start: dt.date, end: dt.date
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """The newest version of each partition in the range, its source columns, and unknown extras."""
    frames, source_columns, extras = [], [], set()
    for day in days(start, end):
        path = lake.newest(settings.lake_dir, contract.system, contract.table, day)
        if path is None:
            raise FileNotFoundError(
                f"nothing landed for {contract.name} on {day} under {settings.lake_dir}: ingest it first"
            )
        df = pl.read_parquet(path)
        has_columns = any(c not in LINEAGE for c in df.columns)  # an empty API window has none
        source = f"{source_name(settings, contract, df, day)}, landed as {path.relative_to(settings.data_dir)}"
        file_extras = check_shape(contract, df.columns, source, day) if has_columns else []
        extras.update(file_extras)
        # Unknown columns are kept, per file, as JSON in _extra, and each row's original payload in _payload:
        # only the columns this file had, so a row's payload does not depend on the range it is read with.
        own = [c for c in df.columns if c not in LINEAGE]
        df = df.with_columns(
            pl.struct(file_extras).struct.json_encode().alias("_extra")
            if file_extras
            else pl.lit(None, dtype=pl.String).alias("_extra"),
            pl.struct([pl.col(c).cast(pl.String) for c in own]).struct.json_encode().alias("_payload")
            if own
            else pl.lit(None, dtype=pl.String).alias("_payload"),
        )
        for column in own:
            if column not in source_columns:
                source_columns.append(column)
        frames.append(df)
    kept = (*LINEAGE, "_extra", "_payload")
    batch = pl.concat(
        [f.with_columns(pl.col(c).cast(pl.String) for c in f.columns if c not in kept) for f in frames],
        how="diagonal_relaxed",
    )
    return batch, source_columns, sorted(extras)


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
) -> IngestReport:
    options = options or IngestOptions()
    report = report or IngestReport(contract.name, start, end)
    batch, source_columns, extras = read_landed(settings, contract, start, end)
    result = apply_contract(contract, batch, source_columns)

    def reread(frame: pl.DataFrame) -> ContractResult:
        return apply_contract(contract, frame, [c for c in frame.columns if c not in LINEAGE])

    with connect(settings.build_db, limits=options.limits) as conn:
        loaded: LoadResult = load_range(
            conn, contract, start, end, result, options.max_quarantine_rate, options.min_quarantined, reread
        )
    report.loaded_rows = loaded.loaded
    report.quarantined_rows = loaded.quarantined
    report.orphans = loaded.orphans
    report.released = loaded.released
    report.per_partition = loaded.per_partition
    report.extra_columns = extras
    report.top_reasons = result.top_reasons()
    if watermark_column and result.valid.height:
        report.watermark = str(result.valid[watermark_column].max())
    elif result.valid.height:
        report.watermark = str(result.valid["_partition"].max())
    report.preview = result.valid.drop("_payload").head(5)
    return report


def rebuild_raw(
    settings: Settings, options: IngestOptions | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Rebuild the whole raw layer from the landing zone alone (parents before children)."""
    counts: dict[str, int] = {}
    with connect(settings.build_db) as conn:
        conn.execute("drop schema if exists raw cascade")
        conn.execute("drop schema if exists quarantine cascade")
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
