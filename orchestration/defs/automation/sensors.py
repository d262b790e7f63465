"""The sensors: a build after every successful landing run, and the accounting export sensor (a day is landed
as soon as its manifest appears, and again for a corrected re-export, a higher manifest version)."""

from __future__ import annotations

import json

import dagster as dg

from dataops.core.settings import Settings
from dataops.ingest.deliveries import export_versions, new_deliveries
from orchestration.defs.automation.jobs import ACCOUNTING_JOB, BUILD, DAILY_JOB
from orchestration.lib.liveness import HEARTBEAT_TAG, HOST_TAG, PID_TAG
from orchestration.lib.names import AFTER_LANDING_TAG, EXTRACTS_KEY, WINDOW_TAG
from orchestration.lib.nothing_new import nothing_new
from orchestration.lib.partitions import run_window


def landed(run: dg.DagsterRun) -> bool:
    """Whether a run landed extracts: a landing job's, or one the UI launched for ``lake/extracts`` (a backfill
    or a launch from the asset graph runs as Dagster's own asset job, with the assets it selected)."""
    return run.job_name in (DAILY_JOB, ACCOUNTING_JOB) or EXTRACTS_KEY in (run.asset_selection or ())


# The landing run's own tags, not the build's: the writes it declares, the command that launched it and the
# process that ran it (the build's liveness is its own: application/runs.py, orchestration/lib/liveness.py).
LANDING_OWN = {"dataops/writes", "dataops/launched_by", "dataops/invocation", PID_TAG, HOST_TAG, HEARTBEAT_TAG}


def build_request(landing: dg.DagsterRun) -> dg.RunRequest:
    """The build that follows a landing run: it loads whatever was landed (the ledger knows what), and carries
    the landing's own ``dataops/`` tags (a volume spike let through, say) and, to read in the UI, its window."""
    window = run_window(dict(landing.tags))
    tags = {k: v for k, v in landing.tags.items() if k.startswith("dataops/") and k not in LANDING_OWN}
    tags[AFTER_LANDING_TAG] = landing.run_id
    if window is not None:
        tags[WINDOW_TAG] = f"{window[0]}..{window[1]}"
    return dg.RunRequest(run_key=f"build-after-{landing.run_id}", tags=tags)


@dg.definitions
def sensors() -> dg.Definitions:
    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        request_job=BUILD,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="After every successful landing run (the schedule's, the accounting sensor's, a backfill "
        "or launch of lake/extracts from the UI), the build job: it loads what was landed and builds, checks and "
        "publishes its days.",
    )
    def build_after_landing(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        if not landed(context.dagster_run):
            return dg.SkipReason(f"run {context.dagster_run.run_id} landed nothing")
        if context.dagster_run.tags.get("dataops/launched_by") == "dataops cli":
            return dg.SkipReason(f"run {context.dagster_run.run_id} was the command line's: it runs its own build")
        if nothing_new(context.instance, context.dagster_run.run_id):
            return dg.SkipReason(f"run {context.dagster_run.run_id} landed nothing new: its days are published as is")
        return build_request(context.dagster_run)

    @dg.sensor(
        job_name=ACCOUNTING_JOB,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lands a day as soon as its accounting manifest appears, and again for a corrected re-export.",
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

    return dg.Definitions(sensors=[build_after_landing, accounting_export_sensor])
