"""The reverse ETL: each CRM account's enterprise state, delinquent flag, MRR and churn-risk band and reasons,
written back where they changed; then the registry's churn-risk rule opens a task for the owner of each account
whose customer entered the high band. A failed sync fails the egress step (step.py); the next run resumes where
it stopped."""

from __future__ import annotations

import dagster as dg

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits
from orchestration.lib.egress import EgressWork, WorkerLog, egress_spec

CRM_SYNC_KEY = dg.AssetKey(["egress", "crm_account_sync"])


def crm_sync_spec() -> dg.AssetSpec:
    return egress_spec(
        CRM_SYNC_KEY,
        "Each CRM account's state, delinquency, MRR and churn risk written back; owner tasks opened.",
        {"api"},
    )


def crm_sync_work(settings: Settings, limits: Limits, base_url: str, token: str) -> EgressWork:
    """The sync, to run on a worker thread; the library is imported here, on the step's thread."""
    from dataops.egress.churn_tasks import open_band_tasks
    from dataops.egress.reverse_etl import crm_endpoint, sync_crm

    def work(log: WorkerLog) -> dg.MaterializeResult:
        reported = 0

        def progress(done: int, total: int) -> None:
            nonlocal reported
            if done == total or done - reported >= 1000:
                log.info(f"CRM sync: {done}/{total} accounts")
                reported = done

        url, crm_token = crm_endpoint(base_url or None, token or None)
        report = sync_crm(settings, url, crm_token, progress=progress, limits=limits)
        tasks = open_band_tasks(settings, url, crm_token, limits=limits)
        for task in tasks:
            log.info(
                task.skipped or f"churn tasks as of {task.as_of}: {len(task.opened)} opened, {len(task.closed)} ended"
            )
        return dg.MaterializeResult(
            asset_key=CRM_SYNC_KEY,
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
            },
        )

    return work
