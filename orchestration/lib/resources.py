"""Resources: the platform's settings and the three systems of record, configured from the environment.

Each value comes from the environment variable of the same name when it is set (as ``dg.EnvVar``, so
the UI shows where it came from), else from the embedded default: a fresh clone needs no configuration.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from dataops.core.settings import DEFAULT_DATA_DIR, Settings
from dataops.core.warehouse import Limits
from dataops.ingest.connectors import Extractor, SourceDataError
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor, RetryPolicy
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import BLOCK_ROWS, IngestOptions
from dataops.transform.runner import WaitingDbt, start_waiting_dbt


def from_env(name: str, default: Any) -> Any:
    """``dg.EnvVar(name)`` when the variable is set, else the default (called at load time only)."""
    return dg.EnvVar(name) if os.environ.get(name) else default


class PlatformResource(dg.ConfigurableResource):
    """Where the platform's data lives, and the limits every run works within."""

    data_dir: str = str(DEFAULT_DATA_DIR)
    max_quarantine_rate: float = 0.10  # the simulator's realistic dirt alone reaches ~5% on some days
    min_quarantined_rows: int = 3
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = 2
    ingest_block_rows: int = BLOCK_ROWS  # rows per block of days, landing and loading (docs/decisions/0064)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.data_dir)

    @property
    def limits(self) -> Limits:
        return Limits(memory_limit=self.duckdb_memory_limit, threads=self.duckdb_threads)

    def ingest_options(self) -> IngestOptions:
        return IngestOptions(
            max_quarantine_rate=self.max_quarantine_rate,
            min_quarantined=self.min_quarantined_rows,
            limits=self.limits,
            block_rows=self.ingest_block_rows,
        )


class SourcesResource(dg.ConfigurableResource):
    """The ERP database, the CRM API and the accounting export folder, reached through their interfaces."""

    data_dir: str = str(DEFAULT_DATA_DIR)
    crm_base_url: str = ""
    crm_token: str = ""
    crm_max_attempts: int = 6
    crm_initial_backoff_seconds: float = 0.5
    crm_timeout_seconds: float = 10.0
    _crm: CrmExtractor | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.data_dir)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._crm is not None:
            self._crm.close()

    def extractor(self, system: str) -> Extractor:
        settings = self.settings
        if system == "erp":
            return ErpExtractor(settings.erp_db)
        if system == "accounting":
            return AccountingExtractor(settings.accounting_exports)
        if system == "crm":
            return self._crm_extractor()
        raise ValueError(f"unknown source system {system!r}")

    def _crm_extractor(self) -> CrmExtractor:
        if self._crm is None:
            if not self.crm_base_url:
                raise SourceDataError(
                    "no CRM configured: set CRM_BASE_URL and CRM_TOKEN (`dataops run` and `dataops ui` serve the "
                    "simulated CRM of the data directory and set them)"
                )
            policy = RetryPolicy(
                max_attempts=self.crm_max_attempts,
                initial_backoff=self.crm_initial_backoff_seconds,
                timeout=self.crm_timeout_seconds,
            )
            self._crm = CrmExtractor(self.crm_base_url, self.crm_token, policy=policy)
        return self._crm


class DbtProcessResource(dg.ConfigurableResource):
    """The dbt step's ``dataops-dbt``, started when the run starts: it imports dbt while the loads run, and
    waits for the step's command (docs/decisions/0092).

    Dagster sets up a run's resources once, before its first step (the in-process executor), and only those
    a step of the run requires: a run without the dbt step starts none. The step takes the process
    (``take``), or ends it at once when dbt has nothing to build (``release``); the run's end ends it if the
    step never came (a failed load, a Ctrl-C). A killed run's process takes it along (the parent-death signal).
    """

    data_dir: str = str(DEFAULT_DATA_DIR)
    _waiting: WaitingDbt | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._waiting = start_waiting_dbt(Settings.from_env(self.data_dir))
        if self._waiting is not None and context.log is not None:
            pid = self._waiting.process.pid
            context.log.info(f"dataops-dbt started (pid {pid}): it imports dbt while it waits for the dbt step")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.release()

    def take(self) -> WaitingDbt | None:
        """The waiting process, handed to the step once (``start_dbt(waiting=...)``): the run's end leaves it."""
        waiting, self._waiting = self._waiting, None
        return waiting

    def release(self) -> None:
        """End the waiting process unused."""
        waiting = self.take()
        if waiting is not None:
            waiting.end()


def platform_resource() -> PlatformResource:
    return PlatformResource(
        data_dir=from_env("DATAOPS_DATA_DIR", str(DEFAULT_DATA_DIR)),
        max_quarantine_rate=float(os.environ.get("DATAOPS_MAX_QUARANTINE_RATE", "0.10")),
        duckdb_memory_limit=from_env("DATAOPS_DUCKDB_MEMORY_LIMIT", "2GB"),
        duckdb_threads=int(os.environ.get("DATAOPS_DUCKDB_THREADS", "2")),
        ingest_block_rows=int(os.environ.get("DATAOPS_INGEST_BLOCK_ROWS", str(BLOCK_ROWS))),
    )


def dbt_process_resource() -> DbtProcessResource:
    return DbtProcessResource(data_dir=from_env("DATAOPS_DATA_DIR", str(DEFAULT_DATA_DIR)))


def sources_resource() -> SourcesResource:
    return SourcesResource(
        data_dir=from_env("DATAOPS_DATA_DIR", str(DEFAULT_DATA_DIR)),
        crm_base_url=from_env("CRM_BASE_URL", ""),
        crm_token=from_env("CRM_TOKEN", ""),
    )
