"""Data products: every published mart and KPI table as Parquet, with a manifest a downstream tool can trust.

Layout, per dataset (``data/exports/<schema>.<table>/``): immutable Parquet files and ``manifest.json``
(dataset, version, row count, schema, published_at, publish_id, and ``files``: each file with its month, row
count, bytes and SHA-256 checksum), replaced atomically; ``data/exports/index.json`` lists the current version
of every dataset of the same publish. A reader opens a manifest, then reads every file it lists (together they
are the dataset): files are never rewritten, and those a version no longer lists stay a while for readers
mid-read.

A dataset with a date column is written as one file per month of its first date column (``partitioned_by``;
``none``: rows without a date), any other as one file (month ``all``): a daily publish changes a few months of
a table of years, and only the files of those months are written again (docs/decisions/0071). A month is
written again when its digest (row count and sum of row hashes) moves, and gets a new file only when its bytes
do: rows are written in a total order with DuckDB's deterministic Parquet writer, so re-exporting an unchanged
publish changes nothing on disk. The months' digests are those the publish kept in the analyst file
(``pipeline.month_digests``, docs/decisions/0078) wherever they still describe its table, so that an export
hashes no table the publish has just hashed. A publish already exported whole (``index.json`` names it and
every file of every manifest is there) is not read again (docs/decisions/0021): a publish id names one analyst
file, never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.compatibility import PARQUET_VERSION
from dataops.core.digest import (
    WHOLE,
    Digests,
    KeptMonths,
    digests,
    first_date_column,
    in_months,
    month_name,
    qualified,
    read_kept,
    trusted,
)
from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect

EXPORTED_SCHEMAS = ("marts", "kpis")
KEEP_VERSIONS = 3
ROW = "_exported_row"  # the alias of a row, hashed whole; no exported column is named so
SHARED_FOLDER, SHARED_FILE = 0o755, 0o644


@dataclass
class ExportReport:
    publish_id: str | None
    datasets: dict[str, int] = field(default_factory=dict)  # dataset -> current version
    changed: list[str] = field(default_factory=list)
    rows: int = 0
    already_exported: bool = False  # the publish was exported whole before: nothing was read or written


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / "exports"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> bool:
    """Replace the file atomically, only when its content changes; True when it did."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(SHARED_FILE)
    os.replace(tmp, path)
    return True


def _shared_folder(folder: Path) -> None:
    """Data products are meant for others: their folders and files are readable by every account, whatever
    the platform's umask (which keeps the rest of the data directory private)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(SHARED_FOLDER)


def read_manifest(settings: Settings, dataset: str) -> dict[str, Any] | None:
    return read_manifest_at(exports_dir(settings) / dataset)


def product_files(settings: Settings, dataset: str) -> list[Path]:
    """The files of the dataset's current version: together, its rows (``read_parquet([...])``)."""
    manifest = read_manifest(settings, dataset)
    return [] if manifest is None else [exports_dir(settings) / dataset / f["file"] for f in manifest["files"]]


def export_data_products(
    settings: Settings,
    limits: Limits | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> ExportReport:
    """Export the published marts and KPIs from the analyst warehouse (read-only); a publish already exported
    whole is left as it is unless ``force``, which exports it again (changing nothing on disk)."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"nothing is published yet ({settings.analytics_db}); run the pipeline first")
    root = exports_dir(settings)
    _shared_folder(root)
    with connect(settings.analytics_db, read_only=True, limits=limits) as conn:
        last = conn.execute(
            "select publish_id, published_at from publish.publish_log order by published_at desc limit 1"
        ).fetchall()
        publish_id, published_at = (str(last[0][0]), last[0][1].isoformat()) if last else (None, None)
        done = None if force or publish_id is None else _exported_whole(root, publish_id)
        if done is not None:
            return done
        tables = conn.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'analytics' "
            f"and schema_name in {EXPORTED_SCHEMAS} order by 1, 2"
        ).fetchall()
        report = ExportReport(publish_id)
        kept = read_kept(conn, "analytics")  # the publish's digests of the file's tables (decision 0078)
        for schema, table in tables:
            dataset = f"{schema}.{table}"
            if progress:
                progress(dataset)
            version, changed, rows = _export_one(conn, root / dataset, dataset, publish_id, published_at, force, kept)
            report.datasets[dataset] = version
            report.rows += rows
            if changed:
                report.changed.append(dataset)
    _write_json(
        root / "index.json",
        {"publish_id": publish_id, "published_at": published_at, "datasets": report.datasets},
    )
    return report


@dataclass(frozen=True)
class _Month:
    key: str  # the file's month (``yyyy-mm``, ``none``), or ``all`` for a dataset without a date column
    where: str  # its rows
    rows: int
    digest: str


def _months(conn: duckdb.DuckDBPyConnection, dataset: str, column: str | None, known: Digests | None) -> list[_Month]:
    """The dataset's months and their digests: those the publish kept in the file (``known``), or read in one
    pass (no sort, nothing written); a dataset without rows is one empty file, so that readers always have its
    schema."""
    found = known if known is not None else digests(conn, dataset, column, ROW)
    if column is None:
        n, h = found.get(WHOLE, (0, None))
        return [_Month("all", "true", n, f"{n}:{h}")]
    months = sorted(found.items())
    if not months:
        return [_Month(month_name(0), "true", 0, "0:None")]
    return [_Month(month_name(m), in_months(column, [m]), n, f"{n}:{h}") for m, (n, h) in months]


def _export_one(
    conn: duckdb.DuckDBPyConnection,
    folder: Path,
    dataset: str,
    publish_id: str | None,
    published_at: str | None,
    force: bool = False,
    kept: dict[str, KeptMonths] | None = None,
) -> tuple[int, bool, int]:
    """Write the files of the months whose digest moved (every month's when ``force``), each aside and then
    moved in, and the manifest last; returns the dataset's version, whether it changed and its rows. The
    months' digests are those ``kept`` by the publish in the file, where they still describe the table
    (:func:`dataops.core.digest.trusted`), else read from it."""
    columns = [(str(r[0]), str(r[1])) for r in conn.execute(f"describe {dataset}").fetchall()]
    column = first_date_column(columns)
    quoted = None if column is None else qualified(ROW, column)
    current = read_manifest_at(folder) or {}
    held = {part["month"]: part for part in current.get("files", [])}
    version = int(current.get("version", 0)) + 1
    staging = folder.parent / ".staging"  # beside, not inside: an unchanged dataset's folder is not touched
    staging.mkdir(exist_ok=True)  # the platform's alone (umask): files are shared once they are complete
    files = []
    known = None if force else trusted(conn, kept or {}, dataset, dataset, columns)
    for month in _months(conn, dataset, quoted, known):
        part = held.get(month.key)
        if part is not None and not force and part["digest"] == month.digest and (folder / part["file"]).exists():
            files.append(part)
            continue
        files.append(_write_month(conn, folder, staging, dataset, month, part, version))
    rows = sum(int(f["row_count"]) for f in files)
    if [f["file"] for f in files] == [f["file"] for f in current.get("files", [])]:
        if files != current["files"]:  # the same bytes under other digests (another DuckDB's hash)
            _write_json(folder / "manifest.json", current | {"files": files})
        return int(current["version"]), False, rows
    retired = _retired(folder, current, files, version)
    gone = [name for name, at in retired.items() if version - at >= KEEP_VERSIONS - 1]  # 3 versions' files stay
    manifest = {
        "dataset": dataset,
        "version": version,
        "partitioned_by": column,
        "files": files,
        "row_count": rows,
        "bytes": sum(int(f["bytes"]) for f in files),
        "published_at": published_at,
        "publish_id": publish_id,
        "schema": [{"name": name, "type": kind} for name, kind in columns],
        "retired": {name: at for name, at in retired.items() if name not in gone},
    }
    _write_json(folder / "manifest.json", manifest)
    for name in gone:
        (folder / name).unlink(missing_ok=True)
    return version, True, rows


def _write_month(
    conn: duckdb.DuckDBPyConnection,
    folder: Path,
    staging: Path,
    dataset: str,
    month: _Month,
    held: dict[str, Any] | None,
    version: int,
) -> dict[str, Any]:
    """One month's file, written aside; the held file stays when the bytes are the same."""
    tmp = staging / f"{dataset}.{month.key}.parquet"
    conn.execute(
        f"copy (select * from {dataset} as {ROW} where {month.where} order by all) to '{tmp}' "
        f"(format parquet, compression zstd, parquet_version {PARQUET_VERSION})"  # readable by older readers
    )
    checksum = f"sha256:{_sha256(tmp)}"
    if held is not None and held["checksum"] == checksum and (folder / held["file"]).exists():
        tmp.unlink()
        return held | {"digest": month.digest}
    _shared_folder(folder)
    name = f"v{version:04d}-{month.key}-{checksum[7:19]}.parquet"
    tmp.chmod(SHARED_FILE)
    os.replace(tmp, folder / name)
    size = (folder / name).stat().st_size
    return {
        "month": month.key,
        "file": name,
        "row_count": month.rows,
        "bytes": size,
        "checksum": checksum,
        "digest": month.digest,
    }


def _retired(folder: Path, current: dict[str, Any], files: list[dict[str, Any]], version: int) -> dict[str, int]:
    """Files no version from now on lists, with the version that dropped them: they stay for readers of the
    versions before it (every other Parquet file in the folder, such as a killed export's, is dropped now)."""
    listed = {f["file"] for f in files}
    retired = {n: int(v) for n, v in current.get("retired", {}).items() if n not in listed}
    for path in sorted(folder.glob("*.parquet")):
        if path.name not in listed and path.name not in retired:
            retired[path.name] = version
    return retired


def _exported_whole(root: Path, publish_id: str) -> ExportReport | None:
    """The report of ``publish_id``'s export, if the index names it and every file it lists is there."""
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    if index.get("publish_id") != publish_id:
        return None
    report = ExportReport(publish_id, already_exported=True)
    for dataset, version in index.get("datasets", {}).items():
        manifest = read_manifest_at(root / dataset)
        if manifest is None or manifest["version"] != version or "files" not in manifest:
            return None
        if not all((root / dataset / part["file"]).exists() for part in manifest["files"]):
            return None
        report.datasets[dataset] = int(version)
        report.rows += int(manifest["row_count"])
    return report


def read_manifest_at(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None
