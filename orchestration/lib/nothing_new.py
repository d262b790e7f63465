"""Whether a landing run brought nothing new, so that no build need follow it (docs/decisions/0057).

Nothing new: every version the raw layer has not loaded (this run's among them) holds, for every day it
covers, the very records (``_record_hash``, which leaves out each extraction's own lineage) and columns of the
newest loaded version of that day; no load waits for a build; the last
complete build was published after it was built; no file of the dbt project and no product event file is
newer than that build; and every day of the window is in ``publish/published_days``. A build would then find
its inputs unchanged (decision 0020) and analysts holding its publish (0021): the landing records the answer
on its run, and the sensor and the command line start no build. A changed definition or policy is not new
data: adopting a definition rebuilds by itself, and ``build_job`` applies anything else. Whatever cannot be
read (no warehouse yet, one another process holds) means "build".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import duckdb
import polars as pl

from dataops.core.settings import DBT_PROJECT_DIR, Settings
from dataops.core.warehouse import Limits, connect, table_exists
from dataops.ingest import lake
from dataops.ingest.events import lake_versions
from dataops.ingest.ledger import loaded_versions, unbuilt_window
from dataops.transform.project import project_files
from orchestration.lib.names import NOTHING_NEW_TAG, PUBLISHED_DAYS_KEY
from quality.contracts import CONTRACTS, Contract


def _day_hashes(version: lake.Version, day: dt.date) -> list[str]:
    path = version.day_file(day)
    if path is None:
        return []
    return sorted(pl.read_parquet(path, columns=["_record_hash"])["_record_hash"].to_list())


def _unloaded_differ(
    conn: duckdb.DuckDBPyConnection, settings: Settings, contract: Contract, run_id: str, mine: bool
) -> str | None:
    """Why a version of the table the raw layer has not loaded (this run's when ``mine``, else the others)
    would change what it holds (None: each holds, for each day it covers, the records of the newest loaded
    version of that day, or is older than that one)."""
    loaded = loaded_versions(conn, contract.system, contract.table)
    found = lake.all_versions(settings.lake_dir, contract.system, contract.table)  # oldest first
    ours = f"-{run_id[:8]}"
    if mine and not any(v.name.endswith(ours) for v in found):
        return f"{contract.name}: this run landed no version"
    newest_loaded: dict[dt.date, lake.Version] = {}
    for version in found:
        if version.name in loaded:
            newest_loaded |= dict.fromkeys(version.rows, version)
    for version in found:
        if version.name in loaded or version.name.endswith(ours) != mine:
            continue
        for day, rows in sorted(version.rows.items()):
            prev = newest_loaded.get(day)
            if prev is not None and prev.name > version.name:
                continue  # older than what is loaded: the reader takes each day's newest version
            if prev is None or prev.legacy:
                return f"{contract.name}: {day} was never loaded"
            if prev.rows[day] != rows or (rows and prev.columns != version.columns):
                return f"{contract.name}: {day} has other rows or columns than the loaded ones"
            if rows and _day_hashes(prev, day) != _day_hashes(version, day):
                return f"{contract.name}: {day} has other records than the loaded ones"
    return None


def _unloaded(conn: duckdb.DuckDBPyConnection, settings: Settings, contract: Contract) -> bool:
    """Whether the lake holds a version of the table the raw layer has not loaded (from folder names alone)."""
    root = lake.table_dir(settings.lake_dir, contract.system, contract.table)
    if not root.exists():
        return False
    names = {
        p.name.removeprefix(lake.VERSION_PREFIX)
        for p in root.iterdir()
        if p.name.startswith(lake.VERSION_PREFIX) and (p / lake.MANIFEST).exists()
    }
    return bool(names - loaded_versions(conn, contract.system, contract.table))


def _warehouse_current(
    conn: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, landed: Sequence[Contract]
) -> str | None:
    """Why the warehouse has not loaded, built and published everything landed (None: it has)."""
    for contract in landed:  # first what this run landed: the answer an operator re-running a day looks for
        reason = _unloaded_differ(conn, settings, contract, run_id, mine=True)
        if reason is not None:
            return reason
    for contract in CONTRACTS.values():  # then what other runs landed and no build has loaded yet
        if _unloaded(conn, settings, contract):
            reason = _unloaded_differ(conn, settings, contract, run_id, mine=False)
            if reason is not None:
                return reason
    if unbuilt_window(conn) is not None:
        return "loads wait for a build"
    if not (table_exists(conn, "pipeline", "dbt_build") and table_exists(conn, "publish", "publish_log")):
        return "nothing built and published yet"
    row = conn.execute(
        "select b.built_at, (select max(published_at) from publish.publish_log) from pipeline.dbt_build b"
    ).fetchone()
    if row is None or row[1] is None or row[1] < row[0]:
        return "the last complete build is not published"
    built_at = row[0].timestamp()
    project = [p for p in project_files(DBT_PROJECT_DIR) if p.stat().st_mtime > built_at]
    if project:
        return f"the dbt project changed since the last build ({project[0].name})"
    events = [v for v in lake_versions(settings) if (settings.lake_dir / v).stat().st_mtime > built_at]
    if events:
        return f"product events landed since the last build ({events[0]})"
    return None


def why_build(
    settings: Settings,
    limits: Limits,
    instance: dg.DagsterInstance,
    run_id: str,
    window: tuple[dt.date, dt.date],
    landed: Sequence[Contract],
) -> str | None:
    """Why a build must follow this landing run, or None when it brought nothing new (see the module)."""
    try:
        with connect(settings.build_db, read_only=True, limits=limits) as conn:
            reason = _warehouse_current(conn, settings, run_id, landed)
    except (duckdb.Error, OSError) as exc:  # no warehouse yet, or one another process holds
        return f"the warehouse cannot say what it holds ({type(exc).__name__})"
    if reason is not None:
        return reason
    published = instance.get_materialized_partitions(PUBLISHED_DAYS_KEY)
    days = [window[0] + dt.timedelta(days=n) for n in range((window[1] - window[0]).days + 1)]
    missing = [d for d in days if d.isoformat() not in published]
    return f"{missing[0]} is not in the published KPIs" if missing else None


def nothing_new(run: dg.DagsterRun) -> bool:
    """Whether a landing run recorded that it brought nothing new (no build follows it)."""
    return run.tags.get(NOTHING_NEW_TAG) == "true"
