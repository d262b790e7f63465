"""Egress: after every successful publish, the dashboard, the Parquet data products and the CRM write-back.

All three read the published analyst warehouse only (never the build warehouse), so they hold no pool and
never wait for, or block, a writer. A failed CRM sync fails its step; the next run resumes where it stopped.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

from typing import Any

import dagster as dg

from orchestration.defs.ingest import OWNER
from orchestration.defs.publish import ANALYTICS_KEY
from orchestration.resources import PlatformResource, SourcesResource

GROUP = "egress"
DASHBOARD_KEY = dg.AssetKey(["egress", "kpi_dashboard"])
EXPORTS_KEY = dg.AssetKey(["egress", "data_products"])
CRM_SYNC_KEY = dg.AssetKey(["egress", "crm_account_sync"])


def assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common: dict[str, Any] = {
        "group_name": GROUP,
        "owners": [OWNER],
        "deps": [ANALYTICS_KEY],
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "tags": {"layer": "egress"},
    }

    @dg.asset(
        key=DASHBOARD_KEY,
        description="The offline KPI dashboard (one self-contained HTML file) rebuilt from the published warehouse.",
        kinds={"html", "plotly"},
        **common,
    )
    def kpi_dashboard(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from dataops.egress.dashboard import refresh_dashboard
        from orchestration.instance import failed_checks

        checks = failed_checks(context.instance, context.run.run_id)
        path, written = refresh_dashboard(platform.settings, checks=checks)
        context.log.info(
            f"dashboard written to {path}" if written else f"dashboard unchanged: {path} shows this publish and status"
        )
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size, "written": written}
        )

    @dg.asset(
        key=EXPORTS_KEY,
        description="Published marts and KPIs as versioned Parquet data products with manifests (data/exports/).",
        kinds={"parquet"},
        **common,
    )
    def data_products(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from dataops.egress.exports import export_data_products, exports_dir

        report = export_data_products(platform.settings, platform.limits)
        if report.already_exported:
            context.log.info(f"publish {report.publish_id} is exported already: {len(report.datasets)} data products")
        else:
            context.log.info(f"{len(report.changed)} of {len(report.datasets)} data products changed")
        return dg.MaterializeResult(
            metadata={
                "publish_id": report.publish_id or "",
                "already_exported": report.already_exported,
                "datasets": len(report.datasets),
                "changed": dg.MetadataValue.json(report.changed),
                "rows": report.rows,
                "path": dg.MetadataValue.path(str(exports_dir(platform.settings))),
            }
        )

    @dg.asset(
        key=CRM_SYNC_KEY,
        description="Each CRM account's enterprise state, delinquent flag and MRR, written back where they changed.",
        kinds={"api"},
        **common,
    )
    def crm_account_sync(
        context: dg.AssetExecutionContext, platform: PlatformResource, sources: SourcesResource
    ) -> dg.MaterializeResult:
        from dataops.egress.reverse_etl import crm_endpoint, sync_crm

        settings = platform.settings

        reported = 0

        def progress(done: int, total: int) -> None:
            nonlocal reported
            if done == total or done - reported >= 1000:
                context.log.info(f"CRM sync: {done}/{total} accounts")
                reported = done

        url, token = crm_endpoint(sources.crm_base_url or None, sources.crm_token or None)
        report = sync_crm(settings, url, token, progress=progress)
        return dg.MaterializeResult(
            metadata={
                "as_of_date": str(report.as_of),
                "accounts_considered": report.accounts_considered,
                "accounts_patched": report.accounts_patched,
                "fields_written": report.fields_written,
                "requests": report.requests,
                "retries": report.retries,
                "missing_accounts": dg.MetadataValue.json(report.missing_accounts),
            }
        )

    return [kpi_dashboard, data_products, crm_account_sync]
