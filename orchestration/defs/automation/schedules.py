"""The daily schedule: at 02:00 UTC (``DATAOPS_DAILY_CRON``), the previous business date."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from orchestration.defs.automation.jobs import DAILY_JOB

DAILY_CRON = "0 2 * * *"  # 02:00 UTC: yesterday has closed everywhere


@dg.definitions
def schedules() -> dg.Definitions:
    @dg.schedule(
        cron_schedule=os.environ.get("DATAOPS_DAILY_CRON", DAILY_CRON),
        job_name=DAILY_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The daily ELT run for the previous business date.",
    )
    def daily_elt_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        day = (scheduled.astimezone(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)

    return dg.Definitions(schedules=[daily_elt_schedule])
