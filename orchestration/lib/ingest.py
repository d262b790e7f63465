"""Ingestion in two parts (docs/decisions/0035).

- ``lake/extracts``: the one daily-partitioned asset that runs. A landing run reads each source table's business
  dates (one day, or a backfill's whole range) in blocks of days within a row budget and lands them as one
  versioned dataset in the lake; its partitions say which days were landed, and a backfill of any range starts
  here.

- One asset per source table, keyed like the dbt ``source()`` it feeds, not partitioned: one step per
  source loads, parents first, every version landed and not yet loaded (whoever launched the landing), and
  evaluates each table's volume circuit breaker (orchestration/lib/brakes.py) over the days it loaded.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from dataops.core.warehouse import held_open
from dataops.ingest.connectors import SourceUnavailable
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.ledger import unbuilt_days
from dataops.ingest.pipeline import IngestReport, land, landing_order, load_pending
from orchestration.lib.brakes import VOLUME_CHECK, volume_check_result, volume_check_spec
from orchestration.lib.metadata import markdown_table
from orchestration.lib.names import EXTRACTS_KEY, NOTHING_NEW_TAG, PLATFORM_OWNER, WAREHOUSE_POOL
from orchestration.lib.nothing_new import why_build
from orchestration.lib.partitions import window
from orchestration.lib.resources import PlatformResource, SourcesResource
from quality.contracts import CONTRACTS, Contract

SOURCE_KIND = {"erp": "sqlite", "crm": "api", "accounting": "csv"}
HOW = {
    "erp": "SQL by updated_at watermark from the ERP",
    "crm": "the CRM API (a bulk export job for a range, cursor pages for a few days)",
    "accounting": "the accounting system's daily export",
}


def _preview(df: pl.DataFrame | None) -> str:
    if df is None or df.height == 0:
        return "(no rows)"
    return markdown_table(df.drop([c for c in df.columns if c.startswith("_")]))


# A table's load materialises once for the build's whole window: its metadata lists each business date's own
# figures, up to this many days (a longer window shows its first and last days).
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
    return {
        "rows_by_day": dg.MetadataValue.md(_by_day(report)),
        "dagster/row_count": report.loaded_rows,
        "window": f"{report.start}..{report.end}",
        "rows_loaded": report.loaded_rows,
        "rows_quarantined": report.quarantined_rows,
        "orphans_quarantined": report.orphans,
        "orphans_released": report.released,
        "partitions": report.partitions,
        "watermark": report.watermark or "",
        "schema_drift_new_columns": dg.MetadataValue.json(report.extra_columns),
        "top_quarantine_reasons": dg.MetadataValue.json(dict(report.top_reasons)),
        "landed_versions": dg.MetadataValue.json(report.landed_files[-5:]),
        "preview": dg.MetadataValue.md(_preview(report.preview)),
    }


# Transient source faults (a CRM outage beyond the connector's own retries, an export not there yet: the
# connectors raise SourceUnavailable) are retried by the landing step; other errors fail it at once.
TRANSIENT = (SourceUnavailable,)
SOURCE_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class LandingConfig(dg.Config):
    """``systems`` lands only these sources (empty: every source), as the accounting sensor's runs do."""

    systems: list[str] = Field(default_factory=list)


def landing_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=EXTRACTS_KEY,
        description="Each business date's extracts of every source table, landed in the lake: one immutable, "
        "versioned Parquet dataset per table and landing run.",
        group_name="lake",
        kinds={"parquet"},
        owners=[PLATFORM_OWNER],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=SOURCE_RETRY,
        tags={"layer": "landing"},
    )
    def extracts(
        context: dg.AssetExecutionContext, sources: SourcesResource, platform: PlatformResource, config: LandingConfig
    ) -> dg.MaterializeResult:
        """Every selected source table's window, extracted in blocks of days, as one landed version."""
        start, end = window(context)
        systems = sorted({c.system for c in CONTRACTS.values()})
        unknown = sorted(set(config.systems) - set(systems))
        if unknown:
            raise dg.Failure(f"unknown source systems {unknown}; the sources are {systems}")
        chosen = [c for c in CONTRACTS.values() if not config.systems or c.system in config.systems]
        chosen = landing_order(chosen, sources.extractor, start, end)  # the CRM's bulk jobs start now
        landed: dict[str, int] = {}
        failed: dict[str, str] = {}
        for contract in chosen:
            try:
                report = land(
                    platform.settings,
                    contract,
                    sources.extractor(contract.system),
                    start,
                    end,
                    context.run.run_id,
                    block_rows=platform.ingest_block_rows,
                )
            except Exception as exc:
                context.log.error(f"{contract.name}: {type(exc).__name__}: {exc}")
                failed[contract.name] = f"{type(exc).__name__}: {exc}"
                continue
            landed[contract.name] = report.landed_rows
            context.log.info(f"{contract.name}: landed {report.landed_rows} rows for {start}..{end}")
        if failed:
            # The other tables are landed, and the build run loads them. Only a source that may come back is
            # worth a retry: bad data fails the same way every time.
            raise dg.Failure(
                description=f"landing failed for {len(failed)} table(s) for {start}..{end}: "
                + "; ".join(f"{name}: {why}" for name, why in failed.items()),
                metadata={"failed_tables": dg.MetadataValue.json(failed), "landed": dg.MetadataValue.json(landed)},
                allow_retries=any(why.startswith(SourceUnavailable.__name__) for why in failed.values()),
            )
        return dg.MaterializeResult(
            metadata={
                **build_follows(context, platform, (start, end), chosen),
                "window": f"{start}..{end}",
                "systems": ", ".join(sorted({c.system for c in chosen})),
                "rows_landed": dg.MetadataValue.json(landed),
                "dagster/row_count": sum(landed.values()),
            }
        )

    return extracts


def build_follows(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    window: tuple[dt.date, dt.date],
    chosen: list[Contract],
) -> dict[str, Any]:
    """Whether a build must follow this landing: when it brought nothing new, the run says so in its tags
    (the sensor and the command line then start no build) and the landing's metadata says why the days
    need none (docs/decisions/0057)."""
    run_id = context.run.run_id
    reason = why_build(platform.settings, platform.limits, context.instance, run_id, window, chosen)
    if reason is not None:
        return {"build": f"follows: {reason}"}
    context.instance.add_run_tags(run_id, {NOTHING_NEW_TAG: "true"})
    context.log.info("nothing new landed: every day is already built and published from these rows; no build")
    return {"build": "none: nothing new landed; every day of the window is built, checked and published as is"}


def _spec(contract: Contract) -> dg.AssetSpec:
    parents = {dg.AssetKey([contract.system, parent]) for parent, _ in contract.references.values()}
    deps: list[dg.AssetKey] = sorted(parents | {EXTRACTS_KEY}, key=lambda k: k.to_user_string())
    return dg.AssetSpec(
        key=dg.AssetKey([contract.system, contract.table]),
        description=f"{contract.system} {contract.table}: {HOW[contract.system]}, landed in the lake and loaded "
        f"into raw.{contract.system}__{contract.table} (bad rows to quarantine).",
        group_name=contract.system,
        kinds={SOURCE_KIND[contract.system], "parquet", "duckdb"},
        owners=[PLATFORM_OWNER],
        deps=deps,
        tags={"layer": "raw"},
        metadata={
            "contract": f"quality/contracts/{contract.system}.py",
            "warehouse_table": f"raw.{contract.system}__{contract.table}",
            "key": ", ".join(contract.key),
        },
    )


def ingest_source(system: str) -> dg.AssetsDefinition:
    """One asset per source table, all of a source's tables loaded in one step (docs/decisions/0018)."""
    ordered = [c for c in CONTRACTS.values() if c.system == system]  # parents first

    @dg.multi_asset(
        name=f"ingest_{system}",
        specs=[_spec(c) for c in ordered],
        check_specs=[volume_check_spec(c) for c in ordered],
        can_subset=True,
        pool=WAREHOUSE_POOL,
    )
    def _ingest(context: dg.AssetExecutionContext, platform: PlatformResource) -> Iterator[dg.MaterializeResult]:
        failed: dict[str, str] = {}
        selected = [c for c in ordered if dg.AssetKey([c.system, c.table]) in context.selected_asset_keys]
        with held_open(platform.settings.build_db, platform.limits) as warehouse:
            for contract in selected:
                waiting = sorted(p for p, _ in contract.references.values() if f"{system}.{p}" in failed)
                if waiting:  # its rows would only wait in quarantine for a parent this run did not load
                    failed[contract.name] = f"not loaded: its parent {', '.join(waiting)} failed"
                    continue
                try:
                    report = load_table(context, platform, contract)
                except Exception as exc:
                    context.log.error(f"{contract.name}: {type(exc).__name__}: {exc}")
                    failed[contract.name] = f"{type(exc).__name__}: {exc}"
                    continue
                yield table_result(context, platform, contract, report, warehouse)
        if failed:
            raise dg.Failure(
                description=f"{system} ingestion failed for {len(failed)} table(s): "
                + "; ".join(f"{name}: {why}" for name, why in failed.items()),
                metadata={"failed_tables": dg.MetadataValue.json(failed)},
            )

    return _ingest


def load_table(
    context: dg.AssetExecutionContext, platform: PlatformResource, contract: Contract
) -> IngestReport | None:
    """Every version of the table landed since its last load (None: nothing new)."""
    report = load_pending(
        platform.settings,
        contract,
        options=platform.ingest_options(),
        run_id=context.run.run_id,
        watermark_column=WATERMARKS.get(contract.system),
    )
    if report is None:
        context.log.info(f"{contract.name}: nothing landed since its last load")
        return None
    context.log.info(
        f"{contract.name}: loaded {report.start}..{report.end}: {report.loaded_rows} rows, "
        f"quarantined {report.quarantined_rows}"
    )
    if report.extra_columns:
        context.log.warning(f"{contract.name}: new source columns kept in _extra: {report.extra_columns}")
    return report


# The column each source's watermark is read from (its connector's).
WATERMARKS = {c.system: c.watermark_column for c in (ErpExtractor, CrmExtractor, AccountingExtractor)}


def table_result(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    contract: Contract,
    report: IngestReport | None,
    warehouse: duckdb.DuckDBPyConnection,
) -> dg.MaterializeResult:
    """The table's materialisation with its volume breaker over the days it loaded, read through the step's
    held warehouse."""
    key = dg.AssetKey([contract.system, contract.table])
    selected = dg.AssetCheckKey(key, VOLUME_CHECK) in context.selected_asset_check_keys
    # The breaker runs in this step (docs/decisions/0013), unless the launch left it out of the selection, over
    # every day loaded and not built yet: a day an earlier run loaded and its breaker halted is judged again by
    # whichever run builds it next, not only by a run that loads it again.
    judged = (set(report.loaded_days) if report else set()) | unbuilt_days(warehouse, contract.system, contract.table)
    checks = []
    if selected:
        checks = [
            volume_check_result(context, platform, contract, min(judged), max(judged), warehouse, judged)
            if judged
            else nothing_to_judge(key)
        ]
    if report is None:
        metadata: dict[str, Any] = {"rows_loaded": 0, "loaded": "nothing new landed"}
        if judged:  # a halted day landed again as it was: its breaker judges it again all the same
            first, last = min(judged), max(judged)
            metadata["judged_unbuilt_days"] = f"{first}..{last} ({len(judged)} days)" if len(judged) > 1 else str(first)
        return dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=checks)
    return dg.MaterializeResult(asset_key=key, metadata=report_metadata(report), check_results=checks)


def nothing_to_judge(key: dg.AssetKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=VOLUME_CHECK,
        passed=True,
        severity=dg.AssetCheckSeverity.ERROR,
        description="nothing loaded in this run: no volume to judge",
    )
