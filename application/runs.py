"""Operating the platform from a terminal: runs recorded in the same Dagster instance the UI shows.

``run_partitions`` executes a job for a range of business dates as one run (range-aware assets), in this
process, against the instance under ``DAGSTER_HOME`` (default ``data/dagster_home``). The run carries the
code location's origin and the tags a scheduled run carries, so the UI shows it on its job's page and the
timeline like any other. Before it starts, runs whose process died are marked failed and their pool slots
freed, and it waits (saying for what) while another live run is in progress; while it runs, it renews a
heartbeat; Ctrl-C stops it cleanly (the run is marked failed, its slots freed). docs/operations.md says more.
"""

from __future__ import annotations

import _thread
import contextlib
import datetime as dt
import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataops.core.settings import Settings, environ
from orchestration.lib.liveness import HEARTBEAT_SECONDS, HEARTBEAT_TAG, process_tags

if TYPE_CHECKING:
    import dagster as dg

# The terminal shows a progress bar and each failed step's root cause; Dagster's log stays in the UI (the instance).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
Progress = Callable[..., None]  # progress(done_steps, current_step, total=steps)
Say = Callable[[str], None]  # what the command says while it waits, and what it recovered

# One "planned" event per asset for a range run, not one per asset and day: measured, it was 38% of a
# 181-day build (12,489 events). The cost: a failed range run does not mark its partitions failed.
PLANNED_EVENTS = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
# The code location the UI loads (workspace.yaml), which a run started here is attributed to.
CODE_LOCATION = ("orchestration", "__repository__")
RUN_LOCK = "dataops-run.lock"
INVOCATION_TAG = "dataops/invocation"  # finds the run Dagster creates for this command


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME if set, else the data directory's; created with the platform's instance config, which is
    written again when the configured storage changes (``DATAOPS_DAGSTER_STORAGE``).

    A new instance's storage is created here, once: the webserver, the daemon and the code server each
    create it on start when it is missing, and started together (`dataops ui`, `dagster dev`) they can race
    on its SQLite schema ("Version table 'alembic_version' has more than one head present").
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    from orchestration.lib.instance import instance_config, instance_environment

    wanted = instance_config()
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
        import dagster as dg

        with environ(instance_environment()), dg.DagsterInstance.from_config(str(home)):
            pass
    return home


def latest_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """The checks that failed in the latest run of the platform's instance (none if it has no runs yet)."""
    from application.run_log import RunLog

    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    log = RunLog(home)
    if log.readable:
        latest = log.runs(limit=1)
        return log.failed_checks(latest[0].run_id) if latest else ([], [])
    if not (home / "dagster.yaml").exists():
        return [], []
    import dagster as dg

    from orchestration.lib.instance import failed_checks, instance_environment

    with environ(instance_environment()), dg.DagsterInstance.from_config(str(home)) as instance:
        return failed_checks(instance)


def platform_values(settings: Settings) -> dict[str, str]:
    """The environment every Dagster entry point of the platform shares (data directory, instance), its
    instance created: for a process that keeps it for its life (the benchmark's worker)."""
    from orchestration.lib.instance import instance_environment

    return instance_environment() | {
        "DATAOPS_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(dagster_home(settings)),
        PLANNED_EVENTS: os.environ.get(PLANNED_EVENTS, "true"),  # see docs/decisions/0014
    }


@contextlib.contextmanager
def platform_environment(settings: Settings) -> Iterator[Path]:
    """:func:`platform_values` for the time of a command."""
    values = platform_values(settings)
    with environ(values):
        yield Path(values["DAGSTER_HOME"])


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No library warnings in a command's output: Dagster's beta notices and its engine's notes concern the
    code location's authors (the tests and the UI still show them), not the operator. A supersession warning
    is silenced only where a library raises it about itself: one the project's own code causes still shows
    (the tests turn those into errors)."""
    import dagster as dg

    engine = logging.getLogger("dagster._core")  # its notes on execution ("... will proceed without gating")
    level = engine.level
    with warnings.catch_warnings():
        for category in (dg.BetaWarning, dg.PreviewWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning, module=r"dagster(_\w+)?(\.|$)")
        engine.setLevel(logging.ERROR)
        try:
            yield
        finally:
            engine.setLevel(level)


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    steps: int
    failures: list[str]
    failed_checks: list[str]
    published: dict[str, Any] | None
    interrupted: bool = False
    recovered: list[str] = field(default_factory=list)
    landing_run_id: str | None = None  # the landing run a build followed
    nothing_new: bool = False  # a landing run that brought nothing new: no build followed (decision 0057)


INTERRUPTS = {"KeyboardInterrupt", "DagsterExecutionInterruptedError"}


def root_cause(failure: Any) -> str:
    """What made a step fail, first: a ``dg.Failure``'s description, else the innermost error of the chain
    (not Dagster's "Error occurred while executing op" wrapper), and how many retries it took.

    ``failure`` is a step failure's data, as Dagster objects or as their stored JSON (application/run_log.py).
    """
    user = _field(failure, "user_failure_data")
    error = _field(failure, "error")
    chain = []
    while error is not None:
        chain.append(error)
        error = _field(error, "cause") or _field(error, "context")
    if any(_field(e, "cls_name") in INTERRUPTS for e in chain):
        return "interrupted (Ctrl-C or a termination signal)"
    description = (_field(user, "description") or "").strip() if user is not None else ""
    innermost = (_field(chain[-1], "message") or "").strip() if chain else ""  # "OSError: [Errno 28] ..."
    cause = description or innermost or "failed (no error recorded)"
    top = (_field(chain[0], "message") or "") if chain else ""
    retried = top.strip() if top.startswith("Exceeded max_retries") else ""
    return f"{cause} ({retried.lower()})" if retried else cause


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def run_failures(result: Any) -> tuple[list[str], list[str]]:
    """What went wrong in a finished run: each failed step with its root cause, each failed check with its
    reason."""
    failures = [
        f"{e.step_key}: {root_cause(e.event_specific_data)}"
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    failed_checks = [
        f"{e.asset_check_key.asset_key.to_user_string()}: {e.asset_check_key.name} ({e.description or 'failed'})"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    return failures, failed_checks


def run_partitions(
    settings: Settings,
    job_name: str,
    start: dt.date,
    end: dt.date,
    progress: Progress | None = None,
    say: Say | None = None,
    build_job: str | None = "build_job",
) -> RunOutcome:
    """Run a job over [start, end] as one run, recorded in the platform's Dagster instance; after a landing
    job, the build job too (as the ``build_after_landing`` sensor does after the schedule's runs): the
    landing's run, then the build's (docs/decisions/0035)."""
    import dagster as dg

    from application.mock_sources import advance_world, crm_environment

    say = say or (lambda _: None)
    advance_world(settings, end)  # a demo's simulated enterprise has the run's last day
    with platform_environment(settings) as home, crm_environment(settings), quiet_libraries():
        job = checked_job(job_name, start, end)
        with dg.DagsterInstance.get() as instance, one_run_at_a_time(home, say):
            recovered = wait_for_the_warehouse(instance, settings, say)
            landing = execute(instance, job, run_tags(start, end), progress, recovered)
            if not landing.success or build_job is None or job.partitions_def is None:
                return landing
            from orchestration.defs.automation.sensors import build_request
            from orchestration.lib.nothing_new import nothing_new

            landed = instance.get_run_by_id(landing.run_id)
            # its days are published as they are (decision 0057)
            if landed is not None and nothing_new(instance, landed.run_id):
                landing.nothing_new = True
                return landing
            request = build_request(landed)  # type: ignore[arg-type]
            build = platform_job(build_job)
            built = execute(instance, build, {**request.tags, **own_tags()}, progress, recovered)
            built.landing_run_id = landing.run_id
            return built


def execute(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    tags: dict[str, str],
    progress: Progress | None,
    recovered: list[str],
) -> RunOutcome:
    """One run of the code location's job in this process's main thread, watched (heartbeat, progress,
    Ctrl-C) and settled however it ends."""
    import dagster as dg

    with watched(instance, tags[INVOCATION_TAG], len(job.graph.nodes), progress) as watch:
        # The job as the code location defines it (execute_in_process would run a copy with another
        # executor and IO manager: another snapshot, which the UI calls "a different version").
        reconstructable = dg.build_reconstructable_job(__name__, "platform_job", (job.name,))
        with dg.execute_job(reconstructable, instance, QUIET, tags, raise_on_error=False) as result:
            return outcome(instance, result, recovered, watch.saw_interrupt())


@functools.cache
def _definitions(data_dir: str) -> dg.Definitions:
    from orchestration.definitions import defs

    return defs()


def platform_job(job_name: str) -> dg.JobDefinition:
    """The platform's job (built once per process and data directory; Dagster asks for it again to run it)."""
    return _definitions(os.environ.get("DATAOPS_DATA_DIR", "")).resolve_job_def(job_name)


def checked_job(job_name: str, start: dt.date, end: dt.date) -> dg.JobDefinition:
    """The platform's job, checked to cover [start, end]."""
    job = platform_job(job_name)
    partitions = job.partitions_def
    if partitions is not None:
        keys = partitions.get_partition_keys()
        if not keys or start.isoformat() < keys[0] or end.isoformat() > keys[-1]:
            first, last = (keys[0], keys[-1]) if keys else ("-", "-")
            raise ValueError(
                f"{start}..{end} is outside the partitions {first}..{last} "
                "(the sources' first business date to yesterday)"
            )
    return job


def run_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    """The tags of a scheduled run (one date) or a backfill (a range), and what tells whether it lives."""
    if start == end:
        dates = {"dagster/partition": start.isoformat()}
    else:
        dates = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        }
    return {**dates, **own_tags()}


def own_tags() -> dict[str, str]:
    """What marks a run as this command's: who launched it, how to find it, and what tells whether it lives."""
    return {"dataops/launched_by": "dataops cli", INVOCATION_TAG: uuid.uuid4().hex, **process_tags()}


def outcome(
    instance: dg.DagsterInstance, result: dg.JobExecutionResult, recovered: list[str], signalled: bool = False
) -> RunOutcome:
    """What the run did. ``signalled``: this command received Ctrl-C or a termination signal while the run
    executed; a failed run is then reported as interrupted, whichever error the signal raised in the step
    (DuckDB turns it into "Query interrupted", a RuntimeError, not a KeyboardInterrupt)."""
    failures, failed_checks = run_failures(result)
    published = None
    for event in result.get_asset_materialization_events():
        if event.asset_key is not None and tuple(event.asset_key.path) == ("publish", "analytics_warehouse"):
            published = {k: v.value for k, v in event.materialization.metadata.items()}
    steps = sum(1 for e in result.all_events if e.event_type_value == "STEP_SUCCESS")
    run = instance.get_run_by_id(result.run_id)
    terminated = run is not None and run.tags.get("dagster/failure_reason") == "UNEXPECTED_TERMINATION"
    interrupted = not result.success and (terminated or signalled)
    return RunOutcome(result.run_id, result.success, steps, failures, failed_checks, published, interrupted, recovered)


@contextlib.contextmanager
def one_run_at_a_time(home: Path, say: Say) -> Iterator[None]:
    """One ``dataops`` run at a time on an instance: an exclusive lock on a file of the instance, which the
    operating system releases however the process ends (even ``kill -9``), so it can never be left held."""
    import fcntl

    with (home / RUN_LOCK).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            say(f"waiting for the dataops run of {holder} on this instance to finish (Ctrl-C gives up)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()}")
        lock.flush()
        yield


def wait_for_the_warehouse(instance: dg.DagsterInstance, settings: Settings, say: Say) -> list[str]:
    """Recover the runs whose process died, then wait while another live run is in progress (its steps hold
    the build warehouse); returns what was recovered. Queued runs wait for this one instead."""
    from dataops.publish.analyst_warehouse import remove_leftovers
    from orchestration.lib.instance import recover_dead_runs

    recovered: list[str] = []
    said = ""
    while True:
        for run in recover_dead_runs(instance, by=f"dataops run (process {os.getpid()})"):
            recovered.append(f"run {run.run_id} ({run.job_name}) was stuck: {run.why}; marked failed")
            say(recovered[-1] + f", {run.freed_slots} pool slot(s) freed")
        busy = in_progress(instance)
        if not busy:
            break
        if busy != said:
            say(busy + " (Ctrl-C gives up)")
            said = busy
        time.sleep(2.0)
    for path in remove_leftovers(settings):
        say(f"removed {path.name}, left by a publish that did not finish")
    return recovered


def in_progress(instance: dg.DagsterInstance) -> str:
    """What a new run would wait for: a live unfinished run, with what it holds and since when ('' if none)."""
    import dagster as dg

    from orchestration.lib.instance import UNFINISHED, pool_holders

    records = instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED), limit=1)
    if not records:
        return ""
    run = records[0].dagster_run
    created = records[0].create_timestamp.replace(tzinfo=dt.UTC)  # stored as naive UTC
    started = dt.datetime.fromtimestamp(records[0].start_time, dt.UTC) if records[0].start_time else created
    from application.run_log import RunRow

    dates = RunRow(run.run_id, run.job_name, "", dict(run.tags), created, created, None).dates
    who = run.tags.get("dataops/launched_by") or ("the schedule" if "dagster/schedule_name" in run.tags else "the UI")
    held = [h for h in pool_holders(instance) if h.run_id == run.run_id]
    step = f", step {held[0].step_key} holds the {held[0].pool} pool" if held else ""
    return f"waiting for run {run.run_id[:8]} ({run.job_name} {dates}, by {who}, since {started:%H:%M:%S} UTC{step})"


@contextlib.contextmanager
def watched(instance: dg.DagsterInstance, invocation: str, total: int, progress: Progress | None) -> Iterator[Watch]:
    """While the run executes (in this thread): its heartbeat, its code-location origin once it exists,
    progress (saying what a step waits for), and Ctrl-C seen through. After it, whatever ended it: a run left
    unfinished is marked failed, and its pool slots are freed."""
    signals, wakeup = socket.socketpair()
    for end in (signals, wakeup):
        end.setblocking(False)
    previous = signal.set_wakeup_fd(wakeup.fileno(), warn_on_full_buffer=False)
    watch = Watch(instance, invocation, total, progress, signals)
    watcher = threading.Thread(target=watch.loop, name="dataops-run-watch", daemon=True)
    watcher.start()
    try:
        yield watch
    finally:
        watch.stop.set()
        watcher.join(timeout=10)
        signal.set_wakeup_fd(previous)
        signals.close()
        wakeup.close()
        settle(instance, invocation)


def run_of(instance: dg.DagsterInstance, invocation: str) -> dg.DagsterRun | None:
    """The run this command started, once Dagster has created it."""
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}), limit=1)
    return records[0].dagster_run if records else None


@dataclass
class Watch:
    """The thread beside a run. Dagster turns Ctrl-C into an exception in the step's code, which a library
    can swallow (seen: DuckDB opening a database while the signal arrives), and the run went on as if
    nothing had happened. The kernel's note of the signal (Python's wakeup file descriptor) is read here,
    and the interrupt delivered again every second until a step has stopped for it."""

    instance: dg.DagsterInstance
    invocation: str
    total: int
    progress: Progress | None
    signals: socket.socket
    stop: threading.Event = field(default_factory=threading.Event)
    interrupted: bool = False
    reading: threading.Lock = field(default_factory=threading.Lock)

    def loop(self) -> None:
        beat, run_id = time.monotonic(), None
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):  # the run's own thread reports its errors; this one only watches
                if run_id is None:
                    run = run_of(self.instance, self.invocation)
                    run_id = run.run_id if run is not None and attribute_to_code_location(self.instance, run) else None
                if run_id is None:
                    continue
                if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                    self.instance.add_run_tags(run_id, {HEARTBEAT_TAG: str(int(time.time()))})
                    beat = time.monotonic()
                self.see_interrupts(run_id)
                if self.progress is not None:
                    self.progress(*step_progress(self.instance, run_id), total=self.total)

    def see_interrupts(self, run_id: str) -> None:
        if self.saw_interrupt() and not self.stopped_for_it(run_id):
            _thread.interrupt_main(signal.SIGINT)

    def saw_interrupt(self) -> bool:
        """Whether Ctrl-C or a termination signal has arrived, read from the kernel's note of it (the run may
        end, failed by the signal, before this thread's next look)."""
        with self.reading, contextlib.suppress(BlockingIOError):
            received = self.signals.recv(64)
            self.interrupted = self.interrupted or bool({signal.SIGINT, signal.SIGTERM} & set(received))
        return self.interrupted

    def stopped_for_it(self, run_id: str) -> bool:
        """Whether the run has ended, or a step has failed (the interrupt took), since Ctrl-C."""
        import dagster as dg

        run = self.instance.get_run_by_id(run_id)
        failed = self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1)
        return run is None or run.is_finished or bool(failed.records)


def settle(instance: dg.DagsterInstance, invocation: str) -> None:
    """However the execution ended: the run finished (marked failed if not), its slots free, its origin set."""
    from orchestration.lib.instance import free_slots

    run = run_of(instance, invocation)
    if run is None:
        return
    if not run.is_finished:
        instance.report_run_failed(run, "the dataops command stopped before the run finished")
    free_slots(instance, run.run_id)
    attribute_to_code_location(instance, run)


def attribute_to_code_location(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Record the run as the code location's (``orchestration``, see workspace.yaml), as a run the UI or the
    schedule launched is, so that the job's page, the timeline and re-execution find it.

    A run executed in process has no such origin, and Dagster has no public constructor for one
    (dagster-io/dagster#17707, #19458): it is made from its stored form, which every run record carries and
    Dagster keeps readable across versions, and set the way ``dagster run migrate-repository`` sets it.
    """
    import dagster as dg

    if run.remote_job_origin is not None:
        return True
    location, repository = CODE_LOCATION
    origin = dg.deserialize_value(
        '{"__class__": "ExternalPipelineOrigin", "external_repository_origin": {"__class__": '
        '"ExternalRepositoryOrigin", "repository_location_origin": {"__class__": '
        f'"RegisteredRepositoryLocationOrigin", "location_name": "{location}"}}, "repository_name": '
        f'"{repository}"}}, "pipeline_name": "{run.job_name}"}}'
    )
    instance.add_run_tags(run.run_id, {".dagster/repository": f"{repository}@{location}"})
    instance.run_storage.replace_job_origin(instance.get_run_by_id(run.run_id), origin)  # type: ignore[arg-type]
    return True


def step_progress(instance: dg.DagsterInstance, run_id: str) -> tuple[int, str]:
    """Steps finished so far, and the step running now, or what the next step waits for."""
    import dagster as dg

    from orchestration.lib.instance import pool_holders

    started = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    finished = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    ).records
    finished_keys = {r.event_log_entry.step_key for r in finished}
    running = [str(r.event_log_entry.step_key) for r in started if r.event_log_entry.step_key not in finished_keys]
    if running:
        return len(finished), running[-1]
    others = pool_holders(instance, except_run=run_id)
    if others:
        held = others[0]
        since = f" since {held.since:%H:%M:%S}" if held.since else ""
        return len(finished), f"waiting: run {held.run_id[:8]} ({held.step_key}) holds {held.pool}{since}"
    return len(finished), ""
