"""Where everything generated lives, resolved from the environment when asked, never at import time.

One object answers every path question so that tests can point the whole platform at a temporary
directory with a single variable (``DATAOPS_DATA_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DBT_PROJECT_DIR = PROJECT_ROOT / "transforms"


@dataclass(frozen=True)
class Settings:
    """Paths of every room under one data directory."""

    data_dir: Path

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        """Build settings from an explicit directory, else ``DATAOPS_DATA_DIR``, else ``data/``."""
        raw = data_dir if data_dir is not None else os.environ.get("DATAOPS_DATA_DIR")
        path = Path(raw) if raw else DEFAULT_DATA_DIR
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        return cls(data_dir=path)

    # --- source systems (the simulated world) ---
    @property
    def sources_dir(self) -> Path:
        return self.data_dir / "sources"

    @property
    def erp_db(self) -> Path:
        return self.sources_dir / "erp" / "erp.sqlite"

    @property
    def crm_db(self) -> Path:
        return self.sources_dir / "crm" / "crm.sqlite"

    @property
    def accounting_exports(self) -> Path:
        return self.sources_dir / "accounting" / "exports"

    @property
    def truth_dir(self) -> Path:
        return self.sources_dir / "truth"

    # --- pipeline rooms ---
    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def build_db(self) -> Path:
        return self.warehouse_dir / "build.duckdb"

    @property
    def analytics_db(self) -> Path:
        return self.warehouse_dir / "analytics.duckdb"

    @property
    def restricted_db(self) -> Path:
        """Restricted datasets and personal data in clear: readable by the platform's OS user only."""
        return self.warehouse_dir / "restricted.duckdb"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def dbt_runs_dir(self) -> Path:
        """dbt's artefacts per Dagster run (compiled SQL, run_results.json, logs), beside the warehouse they
        describe, and the last parse that the next run starts from."""
        return self.data_dir / "dbt_runs"


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the block, then put back what was there."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
