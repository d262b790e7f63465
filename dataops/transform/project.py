"""The dbt project as the platform runs it: the registry's values in, the platform's environment around it.

The registry's definitions reach dbt as vars and generated seeds on every invocation, so a change to
``registry/enterprise.yaml`` changes the models without touching SQL (docs/decisions/0007).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataops.core.settings import DBT_PROJECT_DIR, Settings, engine
from dataops.core.warehouse import Limits
from registry.loader import (
    Registry,
    customer_states_seed_csv,
    dbt_vars,
    definition_periods_seed_csv,
    kpi_seed_csv,
    registry_docs,
)


def write_registry_seeds(registry: Registry, project_dir: Path = DBT_PROJECT_DIR) -> None:
    """Generate the registry seeds and their docs (rewritten only when their content changes, which keeps
    dbt's partial parsing warm)."""
    for path, content in _seeds(registry, project_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)


def registry_seeds_dir(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Where the registry's seeds are generated: written from the registry, not authored."""
    return project_dir / "seeds" / "registry"


def _seeds(registry: Registry, project_dir: Path) -> dict[Path, str]:
    generated = registry_seeds_dir(project_dir)
    return {
        generated / "registry_kpis.csv": kpi_seed_csv(registry),
        generated / "registry_customer_states.csv": customer_states_seed_csv(registry),
        generated / "registry_definition_periods.csv": definition_periods_seed_csv(registry),
        project_dir / "docs" / "registry.md": registry_docs(registry),
    }


@contextmanager
def registry_seeds(registry: Registry, project_dir: Path = DBT_PROJECT_DIR) -> Iterator[None]:
    """The registry's seeds written and held for one dbt invocation.

    dbt reads them from the project folder every process shares. Invocations under the same registry
    version share them (a shared lock); one under another version (a definition proposal, an adoption)
    waits until those end, and they wait for it, so no build reads another version's definitions.
    """
    wanted = _seeds(registry, project_dir)
    lock_path = project_dir / "target" / ".registry-seeds.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        # converting a flock is not atomic (it is released, then taken again): check after every change
        while not all(path.exists() and path.read_text() == text for path, text in wanted.items()):
            fcntl.flock(handle, fcntl.LOCK_EX)
            write_registry_seeds(registry, project_dir)
            fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def registry_vars(registry: Registry) -> str:
    """The --vars of every invocation: constant while the registry is, so dbt's partial parsing holds."""
    return json.dumps(dbt_vars(registry), sort_keys=True)


def window_environment(start: str | None, end: str | None) -> dict[str, str]:
    """The run's business dates, for the window macros (see transforms/macros/window.sql)."""
    return {"DATAOPS_WINDOW_START": start, "DATAOPS_WINDOW_END": end} if start and end else {}


# dbt writes its log file at debug level by default: every query and connection (docs/decisions/0015). Info
# level keeps each node's result and every error; set dbt's own DBT_LOG_LEVEL_FILE=debug to get the rest back.
DBT_FILE_LOG_LEVEL = "info"


def dbt_environment(settings: Settings, limits: Limits | None = None) -> dict[str, str]:
    """What the dbt profile reads (transforms/profiles.yml), with the same names as the Dagster resources."""
    limits = limits or Limits()
    return {
        "DATAOPS_DATA_DIR": str(settings.data_dir),
        "DATAOPS_LAKE_DIR": str(settings.lake_dir),  # the product's events (macros/product_lake.sql)
        "DATAOPS_ENGINE": engine(),  # the profile's target (transforms/profiles.yml)
        "DATAOPS_SPARK_DIR": str(settings.spark_dir),
        "DATAOPS_DUCKDB_MEMORY_LIMIT": limits.memory_limit,
        "DATAOPS_DUCKDB_THREADS": str(limits.threads),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_LOG_LEVEL_FILE": os.environ.get("DBT_LOG_LEVEL_FILE", DBT_FILE_LOG_LEVEL),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


DATAOPS_DBT = "dataops-dbt"  # dbt through dataops/transform/dbt_child.py


def dbt_executable() -> str:
    """The dbt of this environment, whether or not the virtualenv is on PATH: through ``dataops-dbt``, which
    ends with the process that started it (dataops/transform/dbt_child.py), when it is installed."""
    for name in (DATAOPS_DBT, "dbt"):
        local = Path(sys.executable).with_name(name)
        if local.exists():
            return str(local)
    return "dbt"


def through_dataops_dbt(executable: str) -> bool:
    """Whether dbt runs through ``dataops-dbt``, which knows its own arguments (waiting, its JSON log)."""
    return Path(executable).name == DATAOPS_DBT


def manifest_path(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    return project_dir / "target" / "manifest.json"


def project_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    """The files dbt reads from the project: the code, the seeds and the two configuration files."""
    paths = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "seeds", "tests", "snapshots"):
        paths += [p for p in (project_dir / folder).rglob("*") if p.is_file()]
    return sorted(p for p in paths if p.exists())


def authored_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    """The project's files less the registry's generated seeds: any process under another registry version (a
    definition proposal) rewrites those in the shared folder, so their bytes and times say nothing of the code."""
    generated = registry_seeds_dir(project_dir)
    return [p for p in project_files(project_dir) if generated not in p.parents]
