"""The accounting export sensor: a day is ingested as soon as its manifest appears, and again for a corrected
re-export (a higher manifest version)."""

from __future__ import annotations

import json

import dagster as dg

from dataops.core.settings import Settings
from dataops.ingest.deliveries import export_versions, new_deliveries
from orchestration.defs.automation.jobs import ACCOUNTING_JOB


@dg.sensor(
    job_name=ACCOUNTING_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests a day as soon as its accounting manifest appears, and again for a corrected re-export.",
)
def accounting_export_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    current = export_versions(Settings.from_env().accounting_exports)
    if context.cursor is None:  # the first tick: what is already there is the daily job's backlog
        return dg.SensorResult(
            skip_reason=f"watching {len(current)} delivered day(s) for new ones",
            cursor=json.dumps(current, sort_keys=True),
        )
    seen = json.loads(context.cursor)
    requests = [
        dg.RunRequest(
            run_key=f"accounting-{day}-v{version}",
            partition_key=day,
            tags={"dataops/trigger": f"accounting export {day} v{version}"},
        )
        for day, version in new_deliveries(seen, current)
    ]
    seen.update(current)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
