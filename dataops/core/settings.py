"""Where everything generated lives, resolved from the environment when asked, never at import time.

One object answers every path question so that tests can point the whole platform at a temporary
directory with a single variable (``DATAOPS_DATA_DIR``).

The variables that choose where the platform's data, policy, users and pseudonym key are
(:data:`TRUSTED_VARIABLES`) are honoured only for the platform's own account (:func:`platform_uid`):
anyone else who sets them is refused (:class:`UntrustedSetting`), never given the file they point at. The data
directory is private to that account; only the analyst file and the data products are readable by others
(:func:`secure_data_dir`, docs/governance.md).
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DBT_PROJECT_DIR = PROJECT_ROOT / "transforms"
# Variables that choose which files decide who may read what: honoured for the platform's account only.
TRUSTED_VARIABLES = ("DATAOPS_DATA_DIR", "DATAOPS_POLICY", "DATAOPS_USERS", "DATAOPS_PSEUDONYM_KEY_FILE")
# Directly under the data directory, what others may reach: the analyst file (in warehouse/, which they may
# traverse but not list) and the data products. Every other room is the platform account's alone.
SHARED_ROOMS = {"warehouse": 0o711, "exports": 0o755}


class UntrustedSetting(PermissionError):
    """A variable that chooses the platform's files was set by an account other than the platform's."""


def platform_uid() -> int:
    """The platform's account: the owner of the installation's ``data/`` folder (a deployment gives it, or the
    symlink's target, to the service's account; the code itself may stay the administrator's)."""
    anchor = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.exists() else PROJECT_ROOT
    return anchor.stat().st_uid


def caller_uid() -> int:
    """Who is asking, from the operating system: the real uid, never LOGNAME or USER.

    A process of the platform's account started by ``sudo`` on someone's behalf (the deployment's way of
    letting analysts use the CLI door: docs/governance.md) is that someone: sudo records the invoking user in
    ``SUDO_UID`` and nobody but sudo or the platform's account can start a process as the platform's account.
    """
    real = os.getuid()
    sudo_uid = os.environ.get("SUDO_UID", "")
    if real == platform_uid() and sudo_uid.isdigit() and int(sudo_uid) != real:
        return int(sudo_uid)
    return real


def account_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def trusted_env(name: str) -> str | None:
    """The variable's value when the platform's own account set it; refused when anyone else did."""
    if name not in TRUSTED_VARIABLES:
        raise ValueError(f"{name} is not one of the variables that choose the platform's files")
    value = os.environ.get(name) or None
    if value is not None and caller_uid() != platform_uid():
        raise UntrustedSetting(
            f"{name} is honoured only for the platform's account ({account_name(platform_uid())}), not for "
            f"{account_name(caller_uid())}: unset it (docs/governance.md)"
        )
    return value


def config_dir() -> Path:
    """The platform account's own configuration folder, outside every data directory (from the password
    database, not ``HOME``)."""
    return Path(pwd.getpwuid(os.geteuid()).pw_dir) / ".config" / "dataops"


# Where the Dagster instance keeps its runs, event log and schedules: SQLite files under the data directory
# (one machine), or a PostgreSQL database (``DATAOPS_PG_URL``) that services on several machines share
# (docs/deployment.md, docs/decisions/0039).
DAGSTER_STORAGES = ("sqlite", "postgres")
# Where dbt runs the transformations: DuckDB in the build warehouse, or Apache Spark reading the same lake
# (docs/deployment.md, docs/decisions/0038). Each engine is a target of transforms/profiles.yml.
ENGINES = ("duckdb", "spark")


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def dagster_storage() -> str:
    """``DATAOPS_DAGSTER_STORAGE``: sqlite (default) or postgres."""
    return _choice("DATAOPS_DAGSTER_STORAGE", DAGSTER_STORAGES)


def postgres_url() -> str:
    """``DATAOPS_PG_URL``, the Dagster instance's database when the storage is postgres.

    SQLAlchemy 2 takes a bare ``postgresql://`` to mean the psycopg 3 driver, which dagster-postgres does not
    bring; the URL is given the psycopg2 driver it does bring."""
    url = os.environ.get("DATAOPS_PG_URL", "").strip()
    if not url:
        raise ValueError("DATAOPS_DAGSTER_STORAGE=postgres needs DATAOPS_PG_URL (postgresql://user@host:port/db)")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ValueError(f"DATAOPS_PG_URL must be a postgresql:// URL, not {scheme or url!r}")
    return f"postgresql+psycopg2://{rest}"


def engine() -> str:
    """``DATAOPS_ENGINE``: duckdb (default) or spark, the dbt target the transformations run on."""
    return _choice("DATAOPS_ENGINE", ENGINES)


@dataclass(frozen=True)
class Settings:
    """Paths of every room under one data directory."""

    data_dir: Path

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        """Build settings from an explicit directory, else ``DATAOPS_DATA_DIR``, else ``data/``."""
        raw = data_dir if data_dir is not None else trusted_env("DATAOPS_DATA_DIR")
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
    def product_events(self) -> Path:
        """The product's event collectors deliver here: date=/hour=/ folders of NDJSON.gz and a manifest."""
        return self.sources_dir / "product" / "events"

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
    def spark_dir(self) -> Path:
        """The local Spark of ``DATAOPS_ENGINE=spark``: its metastore, its tables and its scratch files."""
        return self.data_dir / "spark"

    @property
    def spark_raw_dir(self) -> Path:
        """The raw layer as Parquet, one folder per table, that the dbt project reads on Spark."""
        return self.spark_dir / "raw"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def dbt_runs_dir(self) -> Path:
        """dbt's artefacts per Dagster run (compiled SQL, run_results.json, logs), beside the warehouse they
        describe, and the last parse that the next run starts from."""
        return self.data_dir / "dbt_runs"

    @property
    def definitions_dir(self) -> Path:
        """Definition changes as this data directory was shown them, the version it adopted, their history,
        and each proposal's own build and impact report (docs/definitions.md)."""
        return self.data_dir / "definitions"

    @property
    def models_dir(self) -> Path:
        """Trained models: per model, one folder per version holding the artefact beside its metrics and card."""
        return self.data_dir / "models"

    @property
    def churn_models_dir(self) -> Path:
        """The churn-risk model's versions and ``current.json``, the version scoring uses (dataops/models)."""
        return self.models_dir / "churn"

    # --- governance (the platform account's alone) ---
    @property
    def governance_dir(self) -> Path:
        return self.data_dir / "governance"

    @property
    def users_file(self) -> Path:
        """Gateway users, roles and hashed tokens (``DATAOPS_USERS``, for the platform's account)."""
        return Path(trusted_env("DATAOPS_USERS") or self.governance_dir / "users.yaml")

    @property
    def pseudonym_key_file(self) -> Path:
        """The pseudonym key: outside the data directory, so that no copy, backup or reader of the data
        carries it (``DATAOPS_PSEUDONYM_KEY_FILE``, for the platform's account; else its own config folder)."""
        return Path(trusted_env("DATAOPS_PSEUDONYM_KEY_FILE") or config_dir() / "pseudonym.key")


def secure_data_dir(settings: Settings) -> None:
    """Make the data directory private to the platform's account, except what others are meant to read.

    Sets the process's umask so that everything written from now on (lake, build warehouse, Dagster's home,
    dbt's artefacts, and every process started from here) is the owner's alone, and closes the rooms that
    exist. Others may traverse the data directory and ``warehouse/`` (not list them) to open the analyst
    file, which publishing makes world-readable, and read the data products under ``exports/``. Does nothing
    to a data directory another account owns.
    """
    os.umask(0o077)
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True)
    if root.stat().st_uid != os.geteuid():
        return
    root.chmod(0o711)
    for name, mode in SHARED_ROOMS.items():
        (root / name).mkdir(exist_ok=True)
        (root / name).chmod(mode)
    for entry in root.iterdir():
        if entry.name not in SHARED_ROOMS:
            _close(entry)
    # the analyst file, and a publish's copy aside, made readable just before it is swapped in
    analyst_files = (settings.analytics_db.name, f".{settings.analytics_db.stem}-")
    for entry in settings.warehouse_dir.iterdir():
        if not entry.name.startswith(analyst_files):
            _close(entry)


def _close(entry: Path) -> None:
    """The owner's alone; an entry that a run removed meanwhile (a temporary file) is no matter."""
    try:
        if not entry.is_symlink():
            entry.chmod(0o700 if entry.is_dir() else 0o600)
    except FileNotFoundError:
        pass


def readable_by_others(path: Path, root: Path) -> bool:
    """Whether an account other than the owner (and not in its group) can read ``path`` under ``root``:
    every folder from ``root`` down lets others through, and the file lets them read."""
    folder = path.parent
    while True:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
        if folder == root:
            break
        folder = folder.parent
    return bool(path.stat().st_mode & stat.S_IROTH)


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
