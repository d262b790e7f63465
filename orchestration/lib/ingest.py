"""Ingestion assets: one per source table, keyed like the dbt ``source()`` they feed, each with its volume
circuit breaker (orchestration/lib/brakes.py); one step per source ingests its tables, parents first.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from dataops.core.warehouse import held_open
from dataops.ingest.connectors import SourceUnavailable
from dataops.ingest.pipeline import IngestReport, ingest
from orchestration.lib.brakes import VOLUME_CHECK, volume_check_result, volume_check_spec
from orchestration.lib.metadata import markdown_table
from orchestration.lib.names import PLATFORM_OWNER, WAREHOUSE_POOL
from orchestration.lib.partitions import window
from orchestration.lib.resources import PlatformResource, SourcesResource
from quality.contracts import CONTRACTS, Contract

SOURCE_KIND = {"erp": "sqlite", "crm": "api", "accounting": "csv"}
HOW = {
    "erp": "SQL by updated_at watermark from the ERP",
    "crm": "the CRM API (updated_since/until, cursor pages)",
    "accounting": "the accounting system's daily export",
}


def _preview(df: pl.DataFrame | None) -> str:
    if df is None or df.height == 0:
        return "(no rows)"
    return markdown_table(df.drop([c for c in df.columns if c.startswith("_")]))


# Dagster gives each partition of a range run the same metadata (dagster-io/dagster#18123), stored once per
# partition: a window up to this long carries its table of days; a longer one (a backfill) its totals only.
BY_DAY_LIMIT = 62


def _by_day(report: IngestReport) -> str:
    days = sorted(report.per_partition)
    frame = pl.DataFrame(
        {
            "business_date": [d.isoformat() for d in days],
            "rows_loaded": [report.per_partition[d][0] - report.per_partition[d][1] for d in days],
            "rows_quarantined": [report.per_partition[d][1] for d in days],
        }
    )
    return markdown_table(frame, rows=BY_DAY_LIMIT)


def report_metadata(report: IngestReport) -> dict[str, Any]:
    by_day = {"rows_by_day": dg.MetadataValue.md(_by_day(report))} if report.partitions <= BY_DAY_LIMIT else {}
    return by_day | {
        "dagster/row_count": report.loaded_rows,
        "rows_landed": report.landed_rows,
        "rows_loaded": report.loaded_rows,
        "rows_quarantined": report.quarantined_rows,
        "orphans_quarantined": report.orphans,
        "orphans_released": report.released,
        "bytes_landed": report.landed_bytes,
        "partitions": report.partitions,
        "watermark": report.watermark or "",
        "schema_drift_new_columns": dg.MetadataValue.json(report.extra_columns),
        "top_quarantine_reasons": dg.MetadataValue.json(dict(report.top_reasons)),
        "landed_files": dg.MetadataValue.json(report.landed_files[-5:]),
        "preview": dg.MetadataValue.md(_preview(report.preview)),
    }


# Transient source faults (a CRM outage beyond the connector's own retries, an export not there yet: the
# connectors raise SourceUnavailable) are retried by the step; other errors fail it at once.
TRANSIENT = (SourceUnavailable,)
SOURCE_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _spec(contract: Contract, partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]) -> dg.AssetSpec:
    parents = {dg.AssetKey([contract.system, parent]) for parent, _ in contract.references.values()}
    deps: list[dg.AssetKey] = sorted(parents | set(upstream), key=lambda k: k.to_user_string())
    return dg.AssetSpec(
        key=dg.AssetKey([contract.system, contract.table]),
        description=f"{contract.system} {contract.table}: {HOW[contract.system]}, landed as Parquet and loaded "
        f"into raw.{contract.system}__{contract.table} (bad rows to quarantine).",
        group_name=contract.system,
        kinds={SOURCE_KIND[contract.system], "parquet", "duckdb"},
        owners=[PLATFORM_OWNER],
        partitions_def=partitions_def,
        deps=deps,
        tags={"layer": "raw"},
        metadata={
            "contract": f"quality/contracts/{contract.system}.py",
            "warehouse_table": f"raw.{contract.system}__{contract.table}",
            "key": ", ".join(contract.key),
        },
    )


def ingest_source(
    system: str, partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey] | None = None
) -> dg.AssetsDefinition:
    """One asset per source table, all of a source's tables in one step (docs/decisions/0018)."""
    ordered = [c for c in CONTRACTS.values() if c.system == system]  # parents first

    @dg.multi_asset(
        name=f"ingest_{system}",
        specs=[_spec(c, partitions_def, upstream or []) for c in ordered],
        check_specs=[volume_check_spec(c) for c in ordered],
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=SOURCE_RETRY,
    )
    def _ingest(
        context: dg.AssetExecutionContext, platform: PlatformResource, sources: SourcesResource
    ) -> Iterator[dg.MaterializeResult]:
        start, end = window(context)
        failed: dict[str, str] = {}
        transient = False
        selected = [c for c in ordered if dg.AssetKey([c.system, c.table]) in context.selected_asset_keys]
        with held_open(platform.settings.build_db, platform.limits) as warehouse:
            for contract in selected:
                waiting = sorted(p for p, _ in contract.references.values() if f"{system}.{p}" in failed)
                if waiting:  # its rows would only wait in quarantine for a parent this attempt did not load
                    failed[contract.name] = f"not ingested: its parent {', '.join(waiting)} failed"
                    continue
                try:
                    report = ingest_table(context, platform, sources, contract, start, end)
                except Exception as exc:
                    context.log.error(f"{contract.name}: {type(exc).__name__}: {exc}")
                    failed[contract.name] = f"{type(exc).__name__}: {exc}"
                    transient = transient or isinstance(exc, TRANSIENT)
                    continue
                yield table_result(context, platform, contract, start, end, report, warehouse)
        if failed:
            # The other tables are landed and loaded. Only a source that may come back is worth a retry:
            # bad data fails the same way every time.
            raise dg.Failure(
                description=f"{system} ingestion failed for {len(failed)} table(s): "
                + "; ".join(f"{name}: {why}" for name, why in failed.items()),
                metadata={"failed_tables": dg.MetadataValue.json(failed)},
                allow_retries=transient,
            )

    return _ingest


def ingest_table(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    sources: SourcesResource,
    contract: Contract,
    start: dt.date,
    end: dt.date,
) -> IngestReport:
    context.log.info(f"ingesting {contract.name} for {start}..{end}")
    report = ingest(
        platform.settings,
        contract,
        sources.extractor(contract.system),
        start,
        end,
        run_id=context.run.run_id,
        options=platform.ingest_options(),
    )
    context.log.info(
        f"{contract.name}: landed {report.landed_rows}, loaded {report.loaded_rows}, "
        f"quarantined {report.quarantined_rows}"
    )
    if report.extra_columns:
        context.log.warning(f"{contract.name}: new source columns kept in _extra: {report.extra_columns}")
    return report


def table_result(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    contract: Contract,
    start: dt.date,
    end: dt.date,
    report: IngestReport,
    warehouse: duckdb.DuckDBPyConnection,
) -> dg.MaterializeResult:
    """The table's materialisation with its volume breaker, read through the step's held warehouse."""
    # The breaker runs in this step (docs/decisions/0013), unless the launch left it out of the selection.
    key = dg.AssetKey([contract.system, contract.table])
    selected = dg.AssetCheckKey(key, VOLUME_CHECK) in context.selected_asset_check_keys
    checks = [volume_check_result(context, platform, contract, start, end, warehouse)] if selected else []
    return dg.MaterializeResult(asset_key=key, metadata=report_metadata(report), check_results=checks)
