"""What the Dagster instance knows that the library cannot: its configuration, and the checks of a run."""

from __future__ import annotations

import os

import dagster as dg

from dataops.core.settings import dagster_storage, postgres_url

# One run at a time from the queue (every run writes the build warehouse), and one step at a time in any
# concurrency pool (the `build_warehouse` pool), which also covers runs launched in process by `dataops run`.
_CONCURRENCY = """\
concurrency:
  runs:
    max_concurrent_runs: 1
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""
# Runs, event log and schedules in one PostgreSQL database; the URL (and any password in it) stays in the
# environment, never in the file (docs/deployment.md).
_POSTGRES = """\
storage:
  postgres:
    postgres_url:
      env: DATAOPS_PG_URL
"""
# Events of a step that covers several partitions, and the planned events of a run, written as one INSERT
# each instead of one per event (Dagster reads it from the environment of every process that writes events).
EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
POSTGRES_EVENT_BATCH = "100"


def instance_config() -> str:
    """The platform's dagster.yaml for the configured storage (``DATAOPS_DAGSTER_STORAGE``)."""
    header = "# Written by dataops: the Dagster instance of this data directory (DATAOPS_DAGSTER_STORAGE).\n"
    if dagster_storage() == "postgres":
        return header + _POSTGRES + _CONCURRENCY
    return header + _CONCURRENCY


def instance_environment() -> dict[str, str]:
    """What every process of the instance needs in its environment for the configured storage: the
    database URL with the driver dagster-postgres brings, and batched event writes."""
    if dagster_storage() != "postgres":
        return {}
    return {"DATAOPS_PG_URL": postgres_url(), EVENT_BATCH_SIZE: os.environ.get(EVENT_BATCH_SIZE, POSTGRES_EVENT_BATCH)}


def failed_checks(instance: dg.DagsterInstance, run_id: str | None = None) -> tuple[list[str], list[str]]:
    """The checks that failed in a run (default: the latest run): errors, then warnings."""
    if run_id is None:
        runs = instance.get_runs(limit=1)
        if not runs:
            return [], []
        run_id = runs[0].run_id
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    failed: list[str] = []
    warned: list[str] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.asset_check_evaluation_data if event is not None else None
        if evaluation is None or evaluation.passed:
            continue
        key = evaluation.asset_check_key
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        (warned if evaluation.severity == dg.AssetCheckSeverity.WARN else failed).append(name)
    return failed, warned
