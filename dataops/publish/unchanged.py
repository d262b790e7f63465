"""Whether a landing brought nothing new: the pure part of decision 0057, read from the lake and the warehouse.

Nothing new: every version the raw layer has not loaded (this run's among them) holds, for every day it
covers, the very records (``_record_hash``, which leaves out each extraction's own lineage) and columns of the
newest loaded version of that day; no load waits for a build; the last complete build was published after it
was built; and no file of the dbt project (the registry's generated seeds aside) and no product event file is
newer than that build. The Dagster code location adds what only its instance knows (runs in progress, the
per-day published status).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from dataops.core.settings import DBT_PROJECT_DIR, Settings
from dataops.core.warehouse import table_exists
from dataops.ingest import lake
from dataops.ingest.events import lake_versions
from dataops.ingest.ledger import accounted, unbuilt_window
from dataops.transform.project import authored_files
from quality.contracts import CONTRACTS, Contract


@dataclass(frozen=True)
class Held:
    """What the warehouse says it has loaded, built and published."""

    loaded: dict[str, set[str]]  # each table's loaded (or matched) versions, by contract name
    waiting: bool  # loads no complete build has covered yet
    built_at: dt.datetime | None  # the last complete build's
    published_at: dt.datetime | None  # the last publish's


def held(conn: duckdb.DuckDBPyConnection) -> Held:
    loaded = accounted(conn)  # a matched version holds nothing new (0103)
    built = published = None
    if table_exists(conn, "pipeline", "dbt_build"):
        built = conn.execute("select max(built_at) from pipeline.dbt_build").fetchone()
    if table_exists(conn, "publish", "publish_log"):
        published = conn.execute("select max(published_at) from publish.publish_log").fetchone()
    return Held(
        loaded,
        unbuilt_window(conn) is not None,
        built[0] if built else None,
        published[0] if published else None,
    )


def landed_before(settings: Settings, contract: Contract, run_id: str) -> str | None:
    """Why this run's version of the table holds a day no earlier version covered (from the manifests)."""
    found = lake.all_versions(settings.lake_dir, contract.system, contract.table)
    mine = [v for v in found if v.name.endswith(f"-{run_id[:8]}")]
    if not mine:
        return f"{contract.name}: this run landed no version"
    covered = {day for v in found if v not in mine for day in v.rows}
    new = sorted(set(mine[-1].rows) - covered)
    return f"{contract.name}: {new[0]} was never loaded" if new else None


def _unloaded_differ(settings: Settings, contract: Contract, loaded: set[str], run_id: str, mine: bool) -> str | None:
    """Why a version of the table the raw layer has not loaded (this run's when ``mine``, else the others)
    would change what it holds (None: each holds, for each day it covers, the records of the newest loaded
    version of that day, or is older than that one: ``lake.day_changes``)."""
    found = lake.all_versions(settings.lake_dir, contract.system, contract.table)  # oldest first
    ours = f"-{run_id[:8]}"
    for _, changes in lake.unjudged_changes(found, loaded, lambda version: version.name.endswith(ours) == mine):
        for day, change in changes.items():
            if change is not None:
                return f"{contract.name}: {day} {change}"
    return None


def _unloaded(settings: Settings, contract: Contract, loaded: set[str]) -> bool:
    """Whether the lake holds a version of the table the raw layer has not loaded (from folder names alone)."""
    root = lake.table_dir(settings.lake_dir, contract.system, contract.table)
    if not root.exists():
        return False
    names = {
        p.name.removeprefix(lake.VERSION_PREFIX)
        for p in root.iterdir()
        if p.name.startswith(lake.VERSION_PREFIX) and (p / lake.MANIFEST).exists()
    }
    return bool(names - loaded)


def raw_layer_holds_it(settings: Settings, held: Held, run_id: str, landed: Sequence[Contract]) -> str | None:
    """Why loading what waits in the lake would change the raw layer (None: it would not)."""
    for contract in landed:  # first what this run landed: the answer an operator re-running a day looks for
        loaded = held.loaded.get(contract.name, set())
        reason = _unloaded_differ(settings, contract, loaded, run_id, mine=True)
        if reason is not None:
            return reason
    for contract in CONTRACTS.values():  # then what other runs landed and no build has loaded yet
        loaded = held.loaded.get(contract.name, set())
        if _unloaded(settings, contract, loaded):
            reason = _unloaded_differ(settings, contract, loaded, run_id, mine=False)
            if reason is not None:
                return reason
    return None


def built_and_published(settings: Settings, held: Held) -> str | None:
    """Why the warehouse's last complete build is not what analysts hold of today's project and events."""
    if held.waiting:
        return "loads wait for a build"
    if held.built_at is None or held.published_at is None:
        return "nothing built and published yet"
    if held.published_at < held.built_at:
        return "the last complete build is not published"
    built_at = held.built_at.timestamp()
    # the registry's generated seeds aside: another registry version's build rewrites them in the shared folder,
    # and a changed definition is applied by its own build, not detected here (orchestration/lib/nothing_new.py)
    project = [p for p in authored_files(DBT_PROJECT_DIR) if p.stat().st_mtime > built_at]
    if project:
        return f"the dbt project changed since the last build ({project[0].name})"
    events = [v for v in lake_versions(settings) if (settings.lake_dir / v).stat().st_mtime > built_at]
    if events:
        return f"product events landed since the last build ({events[0]})"
    return None
