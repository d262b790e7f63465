"""Data products: every published mart and KPI table as Parquet, with a manifest a downstream tool can trust.

Layout, per dataset (``data/exports/<schema>.<table>/``): immutable version files
``v<NNNN>-<checksum>.parquet`` and ``manifest.json`` (dataset, version, file, row count, SHA-256 checksum,
published_at, publish_id, schema), replaced atomically; ``data/exports/index.json`` lists the current
version of every dataset of the same publish. A reader opens a manifest, then the file it names: files
are never rewritten, and the previous versions stay a while for readers mid-read.

A version is its content: rows are written in a total order with DuckDB's deterministic Parquet writer,
so re-exporting an unchanged publish produces the same bytes and changes nothing on disk. A publish already
exported whole (``index.json`` names it and every manifest's file is there) is not read again
(docs/decisions/0021): a publish id names one analyst file, never rewritten.
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
from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect

EXPORTED_SCHEMAS = ("marts", "kpis")
KEEP_VERSIONS = 3
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
        for schema, table in tables:
            dataset = f"{schema}.{table}"
            if progress:
                progress(dataset)
            version, changed, rows = _export_one(conn, root / dataset, dataset, publish_id, published_at)
            report.datasets[dataset] = version
            report.rows += rows
            if changed:
                report.changed.append(dataset)
    _write_json(
        root / "index.json",
        {"publish_id": publish_id, "published_at": published_at, "datasets": report.datasets},
    )
    return report


def _export_one(
    conn: duckdb.DuckDBPyConnection,
    folder: Path,
    dataset: str,
    publish_id: str | None,
    published_at: str | None,
) -> tuple[int, bool, int]:
    staging = folder.parent / ".staging"  # beside, not inside: an unchanged dataset's folder is not touched
    staging.mkdir(exist_ok=True)  # the platform's alone (umask): files are shared once they are complete
    tmp = staging / f"{dataset}.parquet"
    conn.execute(
        f"copy (select * from {dataset} order by all) to '{tmp}' "
        f"(format parquet, compression zstd, parquet_version {PARQUET_VERSION})"  # readable by older readers
    )
    checksum = _sha256(tmp)
    current = read_manifest_at(folder)
    if current is not None and current["checksum"] == f"sha256:{checksum}" and (folder / current["file"]).exists():
        tmp.unlink()
        return int(current["version"]), False, int(current["row_count"])
    version = int(current["version"]) + 1 if current else 1
    _shared_folder(folder)
    name = f"v{version:04d}-{checksum[:12]}.parquet"
    tmp.chmod(SHARED_FILE)
    os.replace(tmp, folder / name)
    row_count = int(conn.execute(f"select count(*) from read_parquet('{folder / name}')").fetchall()[0][0])
    schema = [{"name": str(row[0]), "type": str(row[1])} for row in conn.execute(f"describe {dataset}").fetchall()]
    _write_json(
        folder / "manifest.json",
        {
            "dataset": dataset,
            "version": version,
            "file": name,
            "row_count": row_count,
            "bytes": (folder / name).stat().st_size,
            "checksum": f"sha256:{checksum}",
            "published_at": published_at,
            "publish_id": publish_id,
            "schema": schema,
        },
    )
    for old in sorted(folder.glob("v*.parquet"))[:-KEEP_VERSIONS]:
        old.unlink()
    return version, True, row_count


def _exported_whole(root: Path, publish_id: str) -> ExportReport | None:
    """The report of ``publish_id``'s export, if the index names it and every file it lists is there."""
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    if index.get("publish_id") != publish_id:
        return None
    report = ExportReport(publish_id, already_exported=True)
    for dataset, version in index.get("datasets", {}).items():
        manifest = read_manifest_at(root / dataset)
        if manifest is None or manifest["version"] != version or not (root / dataset / manifest["file"]).exists():
            return None
        report.datasets[dataset] = int(version)
        report.rows += int(manifest["row_count"])
    return report


def read_manifest_at(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None
