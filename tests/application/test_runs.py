"""The platform's Dagster instance: created once, with its config and its storage; runs whose process died
are found and recovered; a failed run is summarised by its root causes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from application.cli import app
from application.run_log import RunLog
from application.runs import (
    dagster_home,
    in_progress,
    one_run_at_a_time,
    outcome,
    quiet_libraries,
    run_failures,
    step_progress,
    watched,
)
from dataops.core.settings import Settings
from orchestration.defs.automation.watchdog import run_watchdog
from orchestration.lib.instance import instance_config, pool_holders, recover_dead_runs
from orchestration.lib.liveness import process_tags


def test_a_new_instance_has_its_storage_before_any_service_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webserver, daemon and code server all create a missing storage on start; started together they
    raced on its schema (two alembic heads) and the code location never loaded."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings(tmp_path))
    assert (home / "dagster.yaml").exists()
    for db in (home / "history" / "runs.db", home / "schedules" / "schedules.db"):
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("select count(*) from alembic_version").fetchone() == (1,)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0


def test_an_instance_config_written_by_an_earlier_version_is_brought_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory made before run monitoring was configured gets it (its pool slots would stay held)."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = Settings(tmp_path).dagster_home / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(instance_config().split("run_monitoring:")[0] + "telemetry:\n  enabled: false\n")
    dagster_home(Settings(tmp_path))
    assert config.read_text() == instance_config()
    assert "run_monitoring:" in config.read_text()


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def damaged_export() -> None:
    raise dg.Failure(description="accounting export 2025-01-03/invoices.csv: checksum differs", allow_retries=True)


@dg.op
def full_disk() -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        raise RuntimeError("could not write the analyst file") from exc


@dg.job
def failing() -> None:
    damaged_export()
    full_disk()


def test_a_failed_runs_summary_leads_with_each_steps_root_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "Exceeded max_retries of 1", not "Error occurred while executing op": the first error, in the
    run's summary and in `dataops status`, with what to do."""
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings(tmp_path))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = failing.execute_in_process(instance=instance, raise_on_error=False)
    failures, _ = run_failures(result)
    assert sorted(failures) == [
        "damaged_export: accounting export 2025-01-03/invoices.csv: checksum differs (exceeded max_retries of 1)",
        "full_disk: OSError: [Errno 28] No space left on device",
    ]
    assert sorted(RunLog(home).step_failures(result.run_id)) == sorted(failures)
    status = CliRunner().invoke(app, ["status"]).output
    assert f"Last run {result.run_id[:8]} (failing ): FAILURE" in status, status
    assert all(f"failed step {failure}" in status for failure in failures), status
    assert "what to do: fix the cause, then run the same dates again" in status


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_died_is_marked_failed_and_frees_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state a `kill -9` leaves: a STARTED run holding the build_warehouse pool. The status shows it
    stuck and what to do; recovery marks it failed and frees the slot; a live run is left alone."""
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings(tmp_path))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead, alive = (
            instance.create_run_for_job(
                failing, status=dg.DagsterRunStatus.STARTED, tags={**process_tags(), "dataops/pid": str(pid)}
            )
            for pid in (_dead_pid(), os.getpid())
        )
        pools = instance.event_log_storage
        pools.initialize_concurrency_limit_to_default("build_warehouse")  # as a run's first claim does
        for run in (dead, alive):  # the dead run holds the slot, the live one waits for it
            pools.claim_concurrency_slot("build_warehouse", run.run_id, "ingest_erp")
        status = CliRunner().invoke(app, ["status"])
        assert f"Run {dead.run_id} (failing ) is stuck: its process {dead.tags['dataops/pid']} is gone" in status.output
        assert "`dataops recover` does it now" in status.output
        assert f"Run {alive.run_id[:8]} (failing ) in progress" in status.output

        recovered = recover_dead_runs(instance, by="a test")
        assert [(r.run_id, r.freed_slots) for r in recovered] == [(dead.run_id, 1)]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
        assert [h.run_id for h in pool_holders(instance)] == []  # freed: the live run claims it on its next try
        assert pools.claim_concurrency_slot("build_warehouse", alive.run_id, "ingest_erp").is_claimed
        assert [h.run_id for h in pool_holders(instance)] == [alive.run_id]
        messages = [r.event_log_entry.message for r in instance.get_records_for_run(dead.run_id).records]
        assert any("a test: marked failed because its process" in m for m in messages)

        # with the daemon running, its sensor does the same within half a minute
        later = instance.create_run_for_job(
            failing, status=dg.DagsterRunStatus.STARTED, tags={**process_tags(), "dataops/pid": str(_dead_pid())}
        )
        skipped = run_watchdog(dg.build_sensor_context(instance=instance))
        assert isinstance(skipped, dg.SkipReason) and skipped.skip_message == "recovered 1 dead run(s)"
        assert instance.get_run_by_id(later.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]


def test_a_run_that_must_wait_says_for_what(tmp_path: Path) -> None:
    """Instead of a silent 0/11: the run it waits for (job, dates, who started it, since when) and the step that
    holds the pool; a second `dataops` run on the instance names the process it waits for."""
    home = dagster_home(Settings(tmp_path))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tags = {**process_tags(), "dagster/partition": "2025-04-10", "dataops/launched_by": "dataops cli"}
        holder = instance.create_run_for_job(failing, status=dg.DagsterRunStatus.STARTED, tags=tags)
        pools = instance.event_log_storage
        pools.initialize_concurrency_limit_to_default("build_warehouse")
        pools.claim_concurrency_slot("build_warehouse", holder.run_id, "ingest_erp")
        said = in_progress(instance)
        assert said.startswith(f"waiting for run {holder.run_id[:8]} (failing 2025-04-10, by dataops cli, since ")
        assert said.endswith(" UTC, step ingest_erp holds the build_warehouse pool)"), said
        waiting = instance.create_run_for_job(failing, status=dg.DagsterRunStatus.STARTED, tags=process_tags())
        _, step = step_progress(instance, waiting.run_id)
        assert step.startswith(f"waiting: run {holder.run_id[:8]} (ingest_erp) holds build_warehouse"), step

    messages: list[str] = []

    def second() -> None:
        with one_run_at_a_time(home, messages.append):
            messages.append("ran")

    with one_run_at_a_time(home, messages.append):
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert messages == [
            f"waiting for the dataops run of process {os.getpid()} on this instance to finish (Ctrl-C gives up)"
        ]
    thread.join(timeout=60)
    assert messages[-1] == "ran"


def test_status_answers_without_loading_dagster(tmp_path: Path) -> None:
    """`dataops status` reads the instance's storage and the analyst file directly: no Dagster, no dbt, not
    even polars (its speed is measured in docs/operations.md, not asserted here)."""
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom application.cli import app\n"
        "result = CliRunner().invoke(app, ['status'])\nprint(result.output)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'dagster', 'dbt', 'dagster_dbt', 'polars'}))"
    )
    env = {**os.environ, "DATAOPS_DATA_DIR": str(tmp_path), "DAGSTER_HOME": ""}
    dagster_home(Settings(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "Nothing published yet" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


@pytest.mark.parametrize("signalled", [True, False], ids=["ctrl-c", "no signal"])
def test_a_run_that_ctrl_c_failed_is_reported_interrupted_whatever_error_the_step_raised(signalled: bool) -> None:
    """DuckDB turns a pending Ctrl-C into "Query interrupted", a RuntimeError: the step fails as any error
    would, before the watcher's next look. The command still reports the run interrupted (exit 130), from
    the kernel's note of the signal; a failure with no signal stays a failure."""

    @dg.op
    def query() -> None:
        raise RuntimeError("Query interrupted")

    @dg.job
    def interrupted_job() -> None:
        query()

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # delivered, noted, and otherwise ignored
    try:
        with dg.instance_for_test() as instance, watched(instance, "invocation", 1, None) as watch:
            if signalled:
                os.kill(os.getpid(), signal.SIGTERM)
            result = interrupted_job.execute_in_process(instance=instance, raise_on_error=False)
            summary = outcome(instance, result, [], watch.saw_interrupt())  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not summary.success
    assert summary.interrupted is signalled


def test_the_cli_silences_library_notices_but_not_a_supersession_the_projects_own_code_causes() -> None:
    """Operators see no library noise; a superseded API the code location still calls is not hidden."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_libraries():
            for module in ("dagster._core.definitions", "dagster_dbt.asset_decorator", "orchestration.defs.x"):
                warnings.warn_explicit("superseded", dg.SupersessionWarning, f"{module}.py", 1, module=module)
            warnings.warn_explicit("beta", dg.BetaWarning, "orchestration/defs/x.py", 1, module="orchestration.x")
    assert [(str(w.message), w.filename) for w in seen] == [("superseded", "orchestration.defs.x.py")]
