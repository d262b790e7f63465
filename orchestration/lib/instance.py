"""What the Dagster instance knows that the library cannot: its configuration, the checks of a run, and
whether a run that says it is running still has a process.

A run executed in the ``dataops`` command's own process (``dataops run``) or in a run worker the daemon
launched can die without a word (``kill -9``, a crash, a closed terminal): it then stays STARTED and keeps
its slot in the ``build_warehouse`` pool, and every later run waits for it. Dagster's run monitoring cannot
tell for either kind (the default run launcher has no health check), so the platform checks the process
itself: the process id and host a ``dataops`` run records in its tags (with a heartbeat), or the process
id Dagster records when it starts a run worker. A run whose process is gone is marked failed and its pool
slots are freed, by the next ``dataops`` run and by the daemon's ``run_watchdog`` sensor (defs/automation/watchdog.py).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import dagster as dg

from dataops.core.settings import dagster_storage, postgres_url
from orchestration.lib.liveness import HEARTBEAT_TAG, PID_TAG, WORKER_PID, Liveness, judge
from orchestration.lib.liveness import UNFINISHED as UNFINISHED_NAMES

UNFINISHED = [dg.DagsterRunStatus(name) for name in UNFINISHED_NAMES]

# One run at a time from the queue (every run writes the build warehouse), and one step at a time in any
# concurrency pool (the `build_warehouse` pool), which also covers runs launched in process by `dataops run`.
# Run monitoring frees the pool slots of finished runs; runs whose process died are found by the platform
# (the run_watchdog sensor and every `dataops run`: docs/operations.md).
_CONCURRENCY = """\
concurrency:
  runs:
    max_concurrent_runs: 1
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  free_slots_after_run_end_seconds: 10
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


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's process id, as Dagster records it when it starts a run in a new process."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        found = WORKER_PID.search(record.event_log_entry.message or "")
        if found:
            return int(found.group(1))
    return None


def liveness(instance: dg.DagsterInstance, record: dg.RunRecord) -> Liveness:
    """Whether an unfinished run still has a process working on it (orchestration/lib/liveness.py)."""
    run_id = record.dagster_run.run_id
    tags = record.dagster_run.tags
    worker = None if PID_TAG in tags or HEARTBEAT_TAG in tags else worker_pid(instance, run_id)
    return judge(tags, worker, last_heard(instance, record))


def last_heard(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    """When the run last wrote anything (its record or an event), in unix seconds."""
    updated = record.update_timestamp
    last = (updated if updated.tzinfo else updated.replace(tzinfo=dt.UTC)).timestamp()  # stored as naive UTC
    events = instance.get_records_for_run(record.dagster_run.run_id, limit=1, ascending=False).records
    return max(last, events[0].event_log_entry.timestamp) if events else last


@dataclass(frozen=True)
class Recovered:
    run_id: str
    job_name: str
    why: str
    freed_slots: int


def recover_dead_runs(instance: dg.DagsterInstance, by: str) -> list[Recovered]:
    """Mark every unfinished run whose process is gone as failed and free its pool slots; free the slots
    of finished runs that still hold some. ``by`` says who did it, in the run's event log."""
    out = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED)):
        health = liveness(instance, record)
        if health.alive:
            continue
        run = record.dagster_run
        message = f"{by}: marked failed because {health.why}; its pool slots are freed"
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
        out.append(Recovered(run.run_id, run.job_name, health.why, free_slots(instance, run.run_id)))
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            held = instance.get_run_by_id(run_id)
            if held is None or held.is_finished:
                free_slots(instance, run_id)
    return out


def free_slots(instance: dg.DagsterInstance, run_id: str) -> int:
    """Free every pool slot a run holds, and its steps waiting for one; returns how many slots it held."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    held = sum(1 for holder in pool_holders(instance) if holder.run_id == run_id)
    storage.free_concurrency_slots_for_run(run_id)
    return held


@dataclass(frozen=True)
class Holder:
    pool: str
    run_id: str
    step_key: str
    since: dt.datetime | None


def pool_holders(instance: dg.DagsterInstance, except_run: str | None = None) -> list[Holder]:
    """Who holds a slot in each pool (the run, its step, since when), other runs than ``except_run``."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        assigned = {(p.run_id, p.step_key): p.assigned_timestamp for p in info.pending_steps}
        for slot in info.claimed_slots:
            if slot.run_id != except_run:
                holders.append(Holder(pool, slot.run_id, slot.step_key, assigned.get((slot.run_id, slot.step_key))))
    return holders
