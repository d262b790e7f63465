"""Running the dbt project: registry values in, the build warehouse's path and limits in the environment.

Both doors use this: Dagster's dbt assets (through dagster-dbt) and the ``dataops dbt`` command. The
registry's definitions reach dbt as vars and generated seeds on every invocation, so a change to
``registry/enterprise.yaml`` changes the models without touching SQL.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dataops.core.digest import digest, files_digest, table_digest
from dataops.core.settings import DBT_PROJECT_DIR, Settings, environ
from dataops.core.warehouse import Limits, connect, table_exists, transaction
from dataops.ingest.lake import PER_EXTRACTION
from registry.loader import (
    Registry,
    customer_states_seed_csv,
    dbt_vars,
    kpi_seed_csv,
    load_registry,
    registry_docs,
)

GENERATED_SEEDS = ("registry_kpis.csv", "registry_customer_states.csv")


def write_registry_seeds(registry: Registry, project_dir: Path = DBT_PROJECT_DIR) -> None:
    """Generate the registry seeds and their docs (rewritten only when their content changes, which keeps
    dbt's partial parsing warm)."""
    generated = {
        project_dir / "seeds" / "registry" / "registry_kpis.csv": kpi_seed_csv(registry),
        project_dir / "seeds" / "registry" / "registry_customer_states.csv": customer_states_seed_csv(registry),
        project_dir / "docs" / "registry.md": registry_docs(registry),
    }
    for path, content in generated.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)


def registry_vars(registry: Registry) -> str:
    """The --vars of every invocation: constant while the registry is, so dbt's partial parsing holds."""
    return json.dumps(dbt_vars(registry), sort_keys=True)


def window_environment(start: str | None, end: str | None) -> dict[str, str]:
    """The run's business dates, for the window macros (see transforms/macros/window.sql)."""
    return {"DATAOPS_WINDOW_START": start, "DATAOPS_WINDOW_END": end} if start and end else {}


# dbt writes its log file at debug level by default: some 4,000 JSON lines per daily run (every query, every
# connection), which cost 2-3 s of the run's 20 s in dbt. Info level keeps each node's result and every
# error; set dbt's own DBT_LOG_LEVEL_FILE=debug to get the rest back.
DBT_FILE_LOG_LEVEL = "info"


def dbt_environment(settings: Settings, limits: Limits | None = None) -> dict[str, str]:
    """What the dbt profile reads (transforms/profiles.yml), with the same names as the Dagster resources."""
    limits = limits or Limits()
    return {
        "DATAOPS_DATA_DIR": str(settings.data_dir),
        "DATAOPS_DUCKDB_MEMORY_LIMIT": limits.memory_limit,
        "DATAOPS_DUCKDB_THREADS": str(limits.threads),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_LOG_LEVEL_FILE": os.environ.get("DBT_LOG_LEVEL_FILE", DBT_FILE_LOG_LEVEL),
    }


@contextmanager
def dbt_env(settings: Settings, limits: Limits | None = None, window: tuple[str, str] | None = None) -> Iterator[None]:
    """Set the dbt environment while a dbt subprocess is started (dagster-dbt inherits os.environ)."""
    unset: dict[str, str | None] = {"DATAOPS_WINDOW_START": None, "DATAOPS_WINDOW_END": None}
    with environ(unset | dbt_environment(settings, limits) | window_environment(*(window or (None, None)))):
        yield


PARTIAL_PARSE = "partial_parse.msgpack"
KEEP_DBT_RUNS = 30


def warm_parse(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Where a data directory keeps the last parse of one checkout of the dbt project.

    Keyed by the project's path: dbt reuses a parse whose files hash the same even when it was made in
    another checkout, and its seeds then point at that checkout's files (a moved or deleted one fails the
    run with "No files found that match the pattern").
    """
    key = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:12]
    return settings.dbt_runs_dir / f"partial_parse-{key}.msgpack"


def run_target(settings: Settings, run_id: str, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """The target folder of one Dagster run's dbt invocation, started from the last run's parse.

    dagster-dbt gives every invocation a fresh target folder and seeds it with the project's
    ``target/partial_parse.msgpack``, which ``dbt parse`` wrote under another profile (another data
    directory, other limits): dbt then re-parsed the whole project on every run ("Unable to do partial
    parsing because profile has changed"), four seconds of each daily run. Each data directory keeps its
    own last parse instead, one per checkout of the project (docs/decisions/0015).
    """
    target = settings.dbt_runs_dir / run_id
    target.mkdir(parents=True, exist_ok=True)
    warm = warm_parse(settings, project_dir)
    if warm.exists() and not (target / PARTIAL_PARSE).exists():
        shutil.copyfile(warm, target / PARTIAL_PARSE)
    return target


def keep_run_target(
    settings: Settings, target: Path, keep: int = KEEP_DBT_RUNS, project_dir: Path = DBT_PROJECT_DIR
) -> None:
    """Keep the run's parse for the next run, and the artefacts of the last ``keep`` runs only (each run
    writes a few megabytes of compiled SQL and logs; the run's results stay in Dagster's event log)."""
    parsed = target / PARTIAL_PARSE
    if parsed.exists():
        staged = settings.dbt_runs_dir / f".{PARTIAL_PARSE}.{os.getpid()}"
        shutil.copyfile(parsed, staged)
        os.replace(staged, warm_parse(settings, project_dir))  # atomic: a reader never sees half a file
    (settings.dbt_runs_dir / PARTIAL_PARSE).unlink(missing_ok=True)  # the unkeyed parse of earlier versions
    runs = sorted((p for p in settings.dbt_runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep)]:
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def manifest_path(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    return project_dir / "target" / "manifest.json"


def _project_files(project_dir: Path) -> list[Path]:
    """The files dbt reads from the project: the code, the seeds and the two configuration files."""
    paths = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "seeds", "tests", "snapshots"):
        paths += [p for p in (project_dir / folder).rglob("*") if p.is_file()]
    return sorted(p for p in paths if p.exists())


def _newest_source(project_dir: Path) -> float:
    return max(p.stat().st_mtime for p in _project_files(project_dir))


def prepare_manifest(registry: Registry | None = None, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Make sure target/manifest.json exists and is newer than the project's files (dbt parse if not)."""
    registry = registry or load_registry()
    write_registry_seeds(registry, project_dir)
    manifest = manifest_path(project_dir)
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source(project_dir):
        return manifest
    result = run_dbt(["parse"], Settings.from_env(), registry)
    if not result.success:
        raise RuntimeError(f"dbt parse failed:\n{result.output[-3000:]}")
    return manifest


DBT_COMMANDS = frozenset(
    {"build", "clean", "clone", "compile", "debug", "deps", "docs", "init", "list", "ls", "parse", "retry", "run"}
    | {"run-operation", "seed", "show", "snapshot", "source", "test"}
)
# Commands that never write the warehouse's tables; any other (or none recognised) may, so it forgets the build.
READ_ONLY_COMMANDS = frozenset({"clean", "compile", "debug", "deps", "docs", "list", "ls", "parse", "show", "test"})


@dataclass
class DbtResult:
    success: bool
    output: str
    results: list[dict[str, Any]]  # target/run_results.json: one entry per node run

    def statuses(self) -> dict[str, str]:
        return {r["unique_id"]: r["status"] for r in self.results}


def dbt_executable() -> str:
    """The dbt of this environment, whether or not the virtualenv is on PATH."""
    local = Path(sys.executable).with_name("dbt")
    return str(local) if local.exists() else "dbt"


def run_dbt(
    args: list[str],
    settings: Settings,
    registry: Registry | None = None,
    window: tuple[str, str] | None = None,
    limits: Limits | None = None,
    in_process: bool = False,
) -> DbtResult:
    """Run dbt with the registry vars and the platform's environment.

    As a subprocess by default, as Dagster does: dbt-duckdb keeps the database open in its process after a
    command. ``in_process`` (dbtRunner, then the adapter's connections are dropped) saves the start-up
    seconds where many small runs follow each other, as in tests.
    """
    registry = registry or load_registry()
    write_registry_seeds(registry)
    command = next((arg for arg in args if arg in DBT_COMMANDS), None)
    if command not in READ_ONLY_COMMANDS and settings.build_db.exists():
        with connect(settings.build_db, limits=limits) as conn:
            forget_build(conn)  # built by hand: the Dagster step must not take it for its own last build
    start, end = window or (None, None)
    full = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--vars",
        registry_vars(registry),
    ]
    results_path = DBT_PROJECT_DIR / "target" / "run_results.json"
    if in_process:
        success, output = _run_in_process(full[1:], settings, limits, window)
    else:
        env = {k: v for k, v in os.environ.items() if k not in ("DATAOPS_WINDOW_START", "DATAOPS_WINDOW_END")}
        env |= dbt_environment(settings, limits) | window_environment(start, end)
        proc = subprocess.run(full, env=env, capture_output=True, text=True, check=False)
        success, output = proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(results_path.read_text())["results"] if results_path.exists() else []
    return DbtResult(success=success, output=output, results=results)


def _run_in_process(
    args: list[str], settings: Settings, limits: Limits | None, window: tuple[str, str] | None
) -> tuple[bool, str]:
    import gc

    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    with dbt_env(settings, limits, window):
        result = dbtRunner().invoke(args)
    DuckDBConnectionManager.close_all_connections()  # release the warehouse file for the caller
    gc.collect()
    return bool(result.success), str(result.exception or "")


# A build's inputs, and the build the warehouse holds (docs/decisions/0020). A re-run of a window whose raw
# rows, project, registry and archive log are all unchanged since the last complete build of that window
# would rebuild the same tables: the dbt step reports them unchanged instead of running dbt.
BUILD_STAMP_DDL = """
create schema if not exists pipeline;
create table if not exists pipeline.dbt_build (
    inputs varchar not null,
    window_start varchar,
    window_end varchar,
    run_id varchar not null,
    built_at timestamptz not null
)
"""


def build_inputs(
    conn: duckdb.DuckDBPyConnection,
    window: tuple[str, str],
    dbt_vars: str,
    project_dir: Path = DBT_PROJECT_DIR,
) -> str:
    """A digest of everything a dbt build of ``window`` reads.

    Raw rows are summed by content without the lineage that changes with every extraction of the same
    records (``PER_EXTRACTION``) and without the columns the CRM write-back sets (a contract's
    ``written_back``): the models read neither, so a re-run that re-extracts an unchanged day leaves the
    digest as it was (tests/transforms/test_dbt_project.py keeps the models off those columns).
    """
    from quality.contracts import CONTRACTS  # pandera: loaded already wherever a build runs, not on every import

    unread = {f"{c.system}__{c.table}": {*PER_EXTRACTION, *c.written_back} for c in CONTRACTS.values()}
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in conn.execute(
        "select table_name, column_name, data_type from information_schema.columns where table_schema = 'raw' "
        "order by table_name, ordinal_position"
    ).fetchall():
        if column not in unread.get(table, PER_EXTRACTION):
            columns.setdefault(str(table), []).append((str(column), str(data_type)))
    parts: dict[str, Any] = {}
    for table, read in columns.items():
        # a row's hash ignores column names, and two types' values may hash alike: both are part of it
        parts[f"raw.{table}"] = [read, table_digest(conn, "raw", table, [name for name, _ in read])]
    parts |= {
        "archive_log": table_digest(conn, "governance", "archive_log"),  # archiving deletes rows from marts
        "project": files_digest(_project_files(project_dir), root=project_dir),
        "vars": dbt_vars,
        "window": list(window),
        "versions": [importlib.metadata.version(p) for p in ("dbt-core", "dbt-duckdb", "duckdb")],
    }
    return digest(parts)


def built_from(conn: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """The inputs digest and run of the last complete build, if the warehouse holds one."""
    if not table_exists(conn, "pipeline", "dbt_build"):
        return None
    row = conn.execute("select inputs, run_id from pipeline.dbt_build").fetchone()
    return (str(row[0]), str(row[1])) if row else None


def forget_build(conn: duckdb.DuckDBPyConnection) -> None:
    """Before dbt writes anything: a build that fails or stops half-way leaves no stamp behind."""
    if table_exists(conn, "pipeline", "dbt_build"):
        conn.execute("delete from pipeline.dbt_build")


def record_build(conn: duckdb.DuckDBPyConnection, inputs: str, window: tuple[str, str], run_id: str) -> None:
    conn.execute(BUILD_STAMP_DDL)
    with transaction(conn):
        conn.execute("delete from pipeline.dbt_build")
        conn.execute(
            "insert into pipeline.dbt_build values (?, ?, ?, ?, now())", [inputs, window[0], window[1], run_id]
        )
