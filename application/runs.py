"""Operating the platform from a terminal: runs recorded in the same Dagster instance the UI shows.

``run_partitions`` executes a job for a range of business dates as one run (range-aware assets), in this
process, against the instance under ``DAGSTER_HOME`` (default ``data/dagster_home``), so the run appears in
the UI like any other. Writes to the build warehouse are still serialised by the instance's pool.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.core.settings import Settings, environ

INSTANCE_CONFIG = """\
# Written by dataops: the Dagster instance of this data directory.
# One run at a time from the queue (every run writes the build warehouse), and one step at a time in any
# concurrency pool (the `build_warehouse` pool), which also covers runs launched in process by `dataops run`.
concurrency:
  runs:
    max_concurrent_runs: 1
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""

# The terminal shows a progress bar; Dagster's own step-by-step log stays in the UI (and the instance).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
Progress = Callable[..., None]  # progress(done_steps, current_step, total=steps)


# One "planned" event per asset for a range run, not one per asset and day: measured, it was 38% of a
# 181-day build (12,489 events). The cost: a failed range run does not mark its partitions failed.
PLANNED_EVENTS = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME if set, else the data directory's; created with the platform's instance config.

    A new instance's storage is created here, once: the webserver, the daemon and the code server each
    create it on start when it is missing, and started together (`dataops ui`, `dagster dev`) they can race
    on its SQLite schema ("Version table 'alembic_version' has more than one head present").
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)
        import dagster as dg  # only for a new instance: every caller imports Dagster anyway, or soon

        with dg.DagsterInstance.from_config(str(home)):
            pass
    return home


def latest_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """The checks that failed in the latest run of the platform's instance (none if it has no runs yet)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    if not (home / "dagster.yaml").exists():
        return [], []
    import dagster as dg

    from orchestration.lib.instance import failed_checks

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return failed_checks(instance)


@contextmanager
def platform_environment(settings: Settings) -> Iterator[Path]:
    """The environment every Dagster entry point of the platform shares (data directory, instance)."""
    home = dagster_home(settings)
    values = {
        "DATAOPS_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(home),
        PLANNED_EVENTS: os.environ.get(PLANNED_EVENTS, "true"),  # see docs/decisions/0014
    }
    with environ(values):
        yield home


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    steps: int
    failures: list[str]
    failed_checks: list[str]
    published: dict[str, Any] | None
    landing_run_id: str | None = None  # the landing run a build followed


def run_failures(result: Any) -> tuple[list[str], list[str]]:
    """What went wrong in a finished run: each failed step with its error, each failed check with its reason."""
    failures = [
        f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    failed_checks = [
        f"{e.asset_check_key.asset_key.to_user_string()}: {e.asset_check_key.name} ({e.description or 'failed'})"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    return failures, failed_checks


def _step_progress(instance: Any, run_id: str) -> tuple[int, str]:
    """Steps finished so far, and the step running now, from the run's event log."""
    import dagster as dg

    done, current = 0, ""
    started = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    finished = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    ).records
    done = len(finished)
    finished_keys = {r.event_log_entry.step_key for r in finished}
    running = [r.event_log_entry.step_key for r in started if r.event_log_entry.step_key not in finished_keys]
    if running:
        current = str(running[-1])
    return done, current


def run_partitions(
    settings: Settings,
    job_name: str,
    start: dt.date,
    end: dt.date,
    progress: Progress | None = None,
    build_job: str | None = "build_job",
) -> RunOutcome:
    """Run a job over [start, end] as one run, recorded in the platform's Dagster instance; after a landing
    job, the build job too (as the ``build_after_landing`` sensor does after the schedule's runs): the
    landing's run, then the build's (docs/decisions/0035)."""
    import dagster as dg

    from application.mock_sources import advance_world, crm_environment

    advance_world(settings, end)  # a demo's simulated enterprise has the run's last day
    with platform_environment(settings), crm_environment(settings):
        from orchestration.definitions import defs

        definitions = defs()
        job = definitions.resolve_job_def(job_name)
        partitions = job.partitions_def
        if partitions is not None:
            keys = partitions.get_partition_keys()
            if not keys or start.isoformat() < keys[0] or end.isoformat() > keys[-1]:
                first, last = (keys[0], keys[-1]) if keys else ("-", "-")
                raise ValueError(
                    f"{start}..{end} is outside the partitions {first}..{last} "
                    "(the sources' first business date to yesterday)"
                )
        tags = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
            "dataops/launched_by": "dataops cli",
        }
        with dg.DagsterInstance.get() as instance:
            landing = _execute_job(instance, job, tags, progress)
            outcome = _outcome(landing)
            if not landing.success or build_job is None or partitions is None:
                return outcome
            from orchestration.defs.automation.sensors import build_request

            request = build_request(instance.get_run_by_id(landing.run_id))  # type: ignore[arg-type]
            build = definitions.resolve_job_def(build_job)
            built = _outcome(
                _execute_job(instance, build, {**request.tags, "dataops/launched_by": "dataops cli"}, progress)
            )
            built.landing_run_id = landing.run_id
            return built


def _execute_job(instance: Any, job: Any, tags: dict[str, str], progress: Progress | None) -> Any:
    """One run of a job in this process (its progress polled from the instance), recorded in the instance."""
    run_id = str(uuid.uuid4())
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(
            result=job.execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_id=run_id, run_config=QUIET
            )
        ),
        name="dataops-run",
        daemon=True,
    )
    worker.start()
    total = len(job.graph.nodes)
    while worker.is_alive():
        worker.join(timeout=0.5)
        if progress is not None:
            progress(*_step_progress(instance, run_id), total=total)
    return outcome["result"]


def _outcome(result: Any) -> RunOutcome:
    failures, failed_checks = run_failures(result)
    published = None
    for event in result.get_asset_materialization_events():
        if event.asset_key is not None and tuple(event.asset_key.path) == ("publish", "analytics_warehouse"):
            published = {k: v.value for k, v in event.materialization.metadata.items()}
    steps = sum(1 for e in result.all_events if e.event_type_value == "STEP_SUCCESS")
    return RunOutcome(result.run_id, result.success, steps, failures, failed_checks, published)
