"""The reverse ETL: each CRM account's enterprise state, delinquent flag, MRR and churn-risk band and reasons,
written back where they changed; then the registry's churn-risk rule opens a task for the owner of each account
whose customer entered the high band. A failed sync fails its step; the next run resumes where it stopped.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import dagster as dg

from orchestration.lib.egress import egress_asset_args
from orchestration.lib.resources import PlatformResource, SourcesResource

CRM_SYNC_KEY = dg.AssetKey(["egress", "crm_account_sync"])


@dg.definitions
def crm_account_sync() -> dg.Definitions:
    @dg.asset(
        key=CRM_SYNC_KEY,
        description="Each CRM account's state, delinquency, MRR and churn risk written back; owner tasks opened.",
        kinds={"api"},
        **egress_asset_args(),
    )
    def crm_sync(
        context: dg.AssetExecutionContext, platform: PlatformResource, sources: SourcesResource
    ) -> dg.MaterializeResult:
        from dataops.egress.churn_tasks import open_band_tasks
        from dataops.egress.reverse_etl import crm_endpoint, sync_crm

        reported = 0

        def progress(done: int, total: int) -> None:
            nonlocal reported
            if done == total or done - reported >= 1000:
                context.log.info(f"CRM sync: {done}/{total} accounts")
                reported = done

        url, token = crm_endpoint(sources.crm_base_url or None, sources.crm_token or None)
        report = sync_crm(platform.settings, url, token, progress=progress)
        tasks = open_band_tasks(platform.settings, url, token)
        for task in tasks:
            context.log.info(
                task.skipped or f"churn tasks as of {task.as_of}: {len(task.opened)} opened, {len(task.closed)} ended"
            )
        return dg.MaterializeResult(
            metadata={
                "as_of_date": str(report.as_of),
                "accounts_considered": report.accounts_considered,
                "accounts_patched": report.accounts_patched,
                "fields_written": report.fields_written,
                "requests": report.requests,
                "retries": report.retries,
                "bulk_jobs": report.bulk_jobs,
                "missing_accounts": dg.MetadataValue.json(report.missing_accounts),
                "churn_tasks_opened": sum(len(t.opened) for t in tasks),
            }
        )

    return dg.Definitions(assets=[crm_sync])
