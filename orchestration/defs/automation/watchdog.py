"""The run watchdog: a run whose process died (killed, crashed) is marked failed and its pool slots freed, so
that the queue and the ``build_warehouse`` pool never wait for a run that no longer runs (docs/operations.md)."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.instance import recover_dead_runs


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose process died (killed, crashed) as failed and frees their pool slots, so that "
    "the queue and the build_warehouse pool never wait for a run that no longer runs.",
)
def run_watchdog(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_dead_runs(context.instance, by="run_watchdog sensor")
    for run in recovered:
        context.log.warning(f"run {run.run_id} ({run.job_name}) marked failed: {run.why}")
    return dg.SkipReason(f"recovered {len(recovered)} dead run(s)" if recovered else "every unfinished run is alive")
