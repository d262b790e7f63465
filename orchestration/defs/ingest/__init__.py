"""Ingestion assets: one per source table, keyed like the dbt ``source()`` they feed, each with its volume
circuit breaker checked in the same step (orchestration/defs/brakes.py).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

from typing import Any

import dagster as dg
import polars as pl

from dataops.ingest.pipeline import IngestReport, ingest
from orchestration.defs.brakes import VOLUME_CHECK, volume_check_result, volume_check_spec
from orchestration.partitions import window
from orchestration.resources import PlatformResource, SourcesResource
from quality.contracts import Contract

OWNER = "team:data-platform"
SOURCE_KIND = {"erp": "sqlite", "crm": "api", "accounting": "csv"}
HOW = {
    "erp": "SQL by updated_at watermark from the ERP",
    "crm": "the CRM API (updated_since/until, cursor pages)",
    "accounting": "the accounting system's daily export",
}
# Ingestion writes the build warehouse: one writer at a time (see automation and dagster.yaml).
WAREHOUSE_POOL = "build_warehouse"


def _markdown(df: pl.DataFrame | None) -> str:
    if df is None or df.height == 0:
        return "(no rows)"
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_width_chars=400,
        fmt_str_lengths=40,
        tbl_cols=12,
    ):
        return str(df.drop([c for c in df.columns if c.startswith("_")]))


def report_metadata(report: IngestReport) -> dict[str, Any]:
    return {
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
        "preview": dg.MetadataValue.md(_markdown(report.preview)),
    }


# Transient source faults (a CRM outage beyond the connector's own retries) are retried by the step.
SOURCE_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def ingest_asset(
    contract: Contract, partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey] | None = None
) -> dg.AssetsDefinition:
    parents = {dg.AssetKey([contract.system, parent]) for parent, _ in contract.references.values()}
    deps = sorted(parents | set(upstream or []), key=lambda k: k.to_user_string())

    @dg.asset(
        key=dg.AssetKey([contract.system, contract.table]),
        description=f"{contract.system} {contract.table}: {HOW[contract.system]}, landed as Parquet and loaded "
        f"into raw.{contract.system}__{contract.table} (bad rows to quarantine).",
        group_name=contract.system,
        kinds={SOURCE_KIND[contract.system], "parquet", "duckdb"},
        owners=[OWNER],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=deps,
        check_specs=[volume_check_spec(contract)],
        pool=WAREHOUSE_POOL,
        retry_policy=SOURCE_RETRY,
        tags={"layer": "raw"},
        metadata={
            "contract": f"quality/contracts/{contract.system}.py",
            "warehouse_table": f"raw.{contract.system}__{contract.table}",
            "key": ", ".join(contract.key),
        },
    )
    def _ingest(
        context: dg.AssetExecutionContext, platform: PlatformResource, sources: SourcesResource
    ) -> dg.MaterializeResult:
        start, end = window(context)
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
        # The breaker runs in this step (not a step of its own: one step less per table and run), unless the
        # launch left it out of the selection.
        selected = dg.AssetCheckKey(context.asset_key, VOLUME_CHECK) in context.selected_asset_check_keys
        checks = [volume_check_result(context, platform, contract, start, end)] if selected else []
        return dg.MaterializeResult(metadata=report_metadata(report), check_results=checks)

    return _ingest


def ingest_assets(
    contracts: list[Contract], partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey] | None = None
) -> list[dg.AssetsDefinition]:
    return [ingest_asset(c, partitions_def, upstream) for c in contracts]
