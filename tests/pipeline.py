"""Test helpers that run the real pipeline on a data directory (Dagster in process, or its pieces)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from dataops.core.settings import Settings, environ
from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import ingest
from orchestration.lib.names import CHURN_MODEL_KEY
from quality.contracts import CONTRACTS
from source_systems.crm.server import RunningServer


@contextmanager
def environment(**values: str) -> Iterator[None]:
    with environ(values):
        yield


def run_job(
    data_dir: Path,
    start: dt.date,
    end: dt.date,
    selection: str | dg.AssetSelection | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = False,
    tags: dict[str, str] | None = None,
    run_config: dict[str, object] | None = None,
    **env: str,
) -> dg.ExecuteInProcessResult:
    """Materialise the selected assets for [start, end] in one in-process run, as a backfill would."""
    from application.mock_sources import crm_environment
    from orchestration.definitions import defs

    with environment(DATAOPS_DATA_DIR=str(data_dir), **env), crm_environment(Settings(data_dir)):
        definitions = defs()
        if selection is None:  # egress has its own tests; the rest need not pay for it on every run
            # nor the churn model's retrain, which has its own job and needs months of history
            selection = (
                dg.AssetSelection.all() - dg.AssetSelection.groups("egress") - dg.AssetSelection.assets(CHURN_MODEL_KEY)
            )
        job = dg.define_asset_job("test_job", selection=selection)
        resolved = dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def("test_job")
        tags = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
            **(tags or {}),
        }
        if instance is not None:
            return resolved.execute_in_process(
                run_config=run_config, instance=instance, tags=tags, raise_on_error=raise_on_error
            )
        with dg.DagsterInstance.ephemeral() as ephemeral:
            return resolved.execute_in_process(
                run_config=run_config, instance=ephemeral, tags=tags, raise_on_error=raise_on_error
            )


def extractors(settings: Settings, crm: RunningServer) -> dict[str, Extractor]:
    return {
        "erp": ErpExtractor(settings.erp_db),
        "crm": CrmExtractor(crm.url, crm.token),
        "accounting": AccountingExtractor(settings.accounting_exports),
    }


def ingest_days(settings: Settings, crm: RunningServer, start: dt.date, end: dt.date) -> None:
    sources = extractors(settings, crm)
    for contract in CONTRACTS.values():
        ingest(settings, contract, sources[contract.system], start, end)


def tables(build_db: Path, schemas: tuple[str, ...]) -> dict[str, list[tuple[object, ...]]]:
    """Every table of the given schemas, sorted row for row."""
    out = {}
    with duckdb.connect(str(build_db), read_only=True) as conn:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            f"where table_schema in ({', '.join('?' * len(schemas))}) and table_type = 'BASE TABLE' order by 1, 2",
            list(schemas),
        ).fetchall()
        for schema, table in names:
            out[f"{schema}.{table}"] = sorted(conn.execute(f"select * from {schema}.{table}").fetchall(), key=repr)
    return out
