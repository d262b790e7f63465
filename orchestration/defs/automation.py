"""Jobs, the daily schedule, the accounting export sensor and freshness checks.

Runs that write the build warehouse are serialised by the instance (data/dagster_home/dagster.yaml:
one run at a time from the queue, and one step at a time in the `build_warehouse` pool).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg

from dataops.core.settings import Settings
from dataops.ingest.deliveries import export_versions, new_deliveries
from orchestration.defs.publish import ANALYTICS_KEY

DAILY_CRON = "0 2 * * *"  # 02:00 UTC: yesterday has closed everywhere
FRESHNESS_HOURS = 6  # KPIs published within this many hours after the day ends
WRITES_TAG = {"dataops/writes": "build_warehouse"}


def jobs(partitions_def: dg.PartitionsDefinition) -> list[dg.UnresolvedAssetJobDefinition]:
    everything = dg.AssetSelection.all()
    return [
        dg.define_asset_job(
            "daily_elt_job",
            selection=everything,
            partitions_def=partitions_def,
            tags=WRITES_TAG,
            description="One business date (or a range, as one run): every source, then dbt, the gate and publishing.",
        ),
        dg.define_asset_job(
            "full_rebuild_job",
            selection=everything,
            partitions_def=partitions_def,
            tags=WRITES_TAG,
            config={"ops": {"enterprise_model": {"config": {"full_refresh": True}}}},
            description="Everything over the partitions launched, with the dbt models rebuilt from scratch.",
        ),
        dg.define_asset_job(
            "accounting_refresh_job",
            selection=dg.AssetSelection.groups("accounting").downstream(),
            partitions_def=partitions_def,
            tags=WRITES_TAG,
            description="A day's accounting export (or its corrected re-export) and what depends on it.",
        ),
    ]


def daily_schedule(cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        cron_schedule=cron,
        job_name="daily_elt_job",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The daily ELT run for the previous business date.",
    )
    def daily_elt_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        day = (scheduled.astimezone(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)

    return daily_elt_schedule


@dg.sensor(
    job_name="accounting_refresh_job",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests a day as soon as its accounting manifest appears, and again for a corrected re-export.",
)
def accounting_export_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = Settings.from_env()
    current = export_versions(settings.accounting_exports)
    if context.cursor is None:  # the first tick: what is already there is the daily job's backlog
        return dg.SensorResult(
            skip_reason=f"watching {len(current)} delivered day(s) for new ones",
            cursor=json.dumps(current, sort_keys=True),
        )
    seen = json.loads(context.cursor)
    deliveries = new_deliveries(seen, current)
    requests = [
        dg.RunRequest(
            run_key=f"accounting-{day}-v{version}",
            partition_key=day,
            tags={"dataops/trigger": f"accounting export {day} v{version}"},
        )
        for day, version in deliveries
    ]
    seen.update(current)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


def freshness(assets: list[dg.AssetKey], hours: int) -> tuple[list[dg.AssetChecksDefinition], dg.SensorDefinition]:
    checks = list(
        dg.build_time_partition_freshness_checks(assets=assets, deadline_cron=f"0 {hours} * * *", timezone="UTC")
    )
    sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks, minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.RUNNING
    )
    return checks, sensor


def definitions(partitions_def: dg.PartitionsDefinition) -> dg.Definitions:
    cron = os.environ.get("DATAOPS_DAILY_CRON", DAILY_CRON)
    hours = int(os.environ.get("DATAOPS_FRESHNESS_HOURS", FRESHNESS_HOURS))
    checks, freshness_sensor = freshness(
        [dg.AssetKey(["kpis", "kpi_daily"]), dg.AssetKey(["kpis", "kpi_monthly"]), ANALYTICS_KEY], hours
    )
    return dg.Definitions(
        jobs=jobs(partitions_def),
        schedules=[daily_schedule(cron)],
        sensors=[accounting_export_sensor, freshness_sensor],
        asset_checks=checks,
    )
