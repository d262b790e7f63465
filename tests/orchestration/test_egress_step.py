"""The egress step (docs/decisions/0096): the CRM sync, the data products and the dashboard in one step, side by
side on threads. The library's functions are faked here (their own tests are in tests/egress/), all but the last
test's, which runs the real ones on a published copy."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from application.runs import run_failures
from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.egress import churn_tasks, dashboard, exports, reverse_etl
from orchestration.defs.egress.crm_account_sync import CRM_SYNC_KEY
from orchestration.defs.egress.data_products import EXPORTS_KEY
from orchestration.defs.egress.kpi_dashboard import DASHBOARD_KEY
from tests.pipeline import definitions_loaded_once, environment, run_job
from tests.published import Published, copy_of

KEYS = {CRM_SYNC_KEY, EXPORTS_KEY, DASHBOARD_KEY}
Hook = Callable[[], object]


@pytest.fixture(scope="module")
def step(tmp_path_factory: pytest.TempPathFactory) -> dg.AssetsDefinition:
    """The egress step as the code location defines it (loaded once for the module)."""
    from orchestration.definitions import defs

    with environment(DATAOPS_DATA_DIR=str(tmp_path_factory.mktemp("egress-defs"))):
        return defs().resolve_assets_def(CRM_SYNC_KEY)


class Fakes:
    """The three library calls the step makes, faked: each runs its key's hook (default: nothing), records the
    thread it ran on and returns a report like the real one's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hooks: dict[dg.AssetKey, Hook] = {}
        self.threads: dict[dg.AssetKey, str] = {}

    def _run(self, key: dg.AssetKey) -> None:
        self.threads[key] = threading.current_thread().name
        self.hooks.get(key, lambda: None)()

    def sync_crm(self, settings: Settings, url: str, token: str, **kwargs: Any) -> reverse_etl.SyncReport:
        kwargs["progress"](1000, 2000)
        self._run(CRM_SYNC_KEY)
        kwargs["progress"](2000, 2000)
        return reverse_etl.SyncReport("s1", dt.date(2025, 3, 1), "p1", accounts_considered=2000, accounts_patched=2000)

    def export(self, settings: Settings, limits: Limits | None = None) -> exports.ExportReport:
        self._run(EXPORTS_KEY)
        return exports.ExportReport("p1", datasets={"kpis.kpi_daily": 1}, changed=["kpis.kpi_daily"], rows=10)

    def dashboard(self, settings: Settings, **kwargs: Any) -> tuple[Path, bool]:
        self._run(DASHBOARD_KEY)
        page = self.root / "index.html"
        page.write_text("<html></html>")
        return page, True


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    faked = Fakes(tmp_path)
    monkeypatch.setattr(reverse_etl, "sync_crm", faked.sync_crm)
    monkeypatch.setattr(churn_tasks, "open_band_tasks", lambda *a, **k: [churn_tasks.TaskReport(None, skipped="none")])
    monkeypatch.setattr(exports, "export_data_products", faked.export)
    monkeypatch.setattr(dashboard, "refresh_dashboard", faked.dashboard)
    return faked


def materialise(
    step: dg.AssetsDefinition,
    data_dir: Path,
    selection: list[dg.AssetKey] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """The step run with the code location's resources (read from the environment when it runs)."""
    with environment(DATAOPS_DATA_DIR=str(data_dir), CRM_BASE_URL="http://crm.invalid"):
        return dg.materialize([step], selection=selection, instance=instance, raise_on_error=False)


def materialised(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    return {
        e.asset_key: {k: v.value for k, v in e.step_materialization_data.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None
    }


def test_the_three_run_side_by_side_in_one_step(step: dg.AssetsDefinition, fakes: Fakes, tmp_path: Path) -> None:
    """Each waits for the other two: run one after the other, the first would wait out the barrier's timeout."""
    barrier = threading.Barrier(3, timeout=20)
    fakes.hooks = dict.fromkeys(KEYS, barrier.wait)
    result = materialise(step, tmp_path)
    assert result.success
    assert set(materialised(result)) == KEYS
    assert {e.step_key for e in result.all_events if e.step_key} == {"egress"}
    assert all(name.startswith("egress") for name in fakes.threads.values())  # the pool's threads, not the step's


@pytest.mark.parametrize("failing", [CRM_SYNC_KEY, EXPORTS_KEY])
def test_one_failing_lets_the_others_materialise_then_fails_the_step_naming_it(
    step: dg.AssetsDefinition, fakes: Fakes, tmp_path: Path, failing: dg.AssetKey
) -> None:
    def fail() -> None:
        raise reverse_etl.CrmSyncError("the CRM answered 503 three times")

    fakes.hooks = {failing: fail}
    result = materialise(step, tmp_path)
    assert not result.success
    assert set(materialised(result)) == KEYS - {failing}
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    assert data.user_failure_data is not None and data.error is not None and data.error.cause is not None
    named = f"{failing.to_user_string()} failed: CrmSyncError: the CRM answered 503 three times"
    assert data.user_failure_data.description == named
    assert run_failures(result)[0] == [f"egress: {named}"]  # what `dataops run` prints
    assert data.error.cause.cls_name == "CrmSyncError"  # the original error, chained
    traceback = data.user_failure_data.metadata[failing.to_user_string()].value
    assert isinstance(traceback, str) and "in fail" in traceback


def test_a_selected_asset_runs_alone(step: dg.AssetsDefinition, fakes: Fakes, tmp_path: Path) -> None:
    result = materialise(step, tmp_path, selection=[EXPORTS_KEY])
    assert result.success
    assert materialised(result) == {
        EXPORTS_KEY: {
            "publish_id": "p1",
            "already_exported": False,
            "datasets": 1,
            "changed": ["kpis.kpi_daily"],
            "rows": 10,
            "path": str(tmp_path / "exports"),
        }
    }
    assert set(fakes.threads) == {EXPORTS_KEY}


def test_a_workers_lines_reach_the_runs_log_from_the_steps_thread_while_it_runs(
    step: dg.AssetsDefinition, fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync's first progress line is in the run's log before the sync ends, not flushed at the step's end;
    Dagster's log is written by the step's thread (the test's: the run is in process), never by a worker."""
    writers: dict[str, str] = {}
    handle = dg.DagsterLogManager.handle

    def handled(manager: dg.DagsterLogManager, record: logging.LogRecord) -> None:
        writers[record.getMessage()] = record.threadName or ""
        handle(manager, record)

    monkeypatch.setattr(dg.DagsterLogManager, "handle", handled)
    fakes.hooks = {CRM_SYNC_KEY: lambda: time.sleep(1.0)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialise(step, tmp_path, selection=[CRM_SYNC_KEY], instance=instance)
        assert result.success
        lines = {r.user_message: r.timestamp for r in instance.all_logs(result.run_id) if not r.is_dagster_event}
    progress = ["CRM sync: 1000/2000 accounts", "CRM sync: 2000/2000 accounts"]
    assert {*progress, "none"} <= set(lines)  # every line the asset logs: its progress, then each task report
    assert lines[progress[1]] - lines[progress[0]] > 0.8
    assert {writers[line] for line in [*progress, "none"]} == {threading.current_thread().name}


@pytest.mark.xdist_group("published")
def test_the_real_three_read_the_analyst_file_together_under_the_runs_limits_and_a_rerun_changes_nothing(
    published: Published, tmp_path: Path
) -> None:
    """DuckDB opens a file once per process and configuration, and refuses a connection with another one while
    it is open: a reader holding the analyst file under the run's (non-default) limits is joined by every
    connection of the step, or the step fails. Run again, the step writes nothing (decision 0096)."""
    world = copy_of(published, tmp_path / "data")
    day = published.late_day - dt.timedelta(days=1)
    egress, definitions = dg.AssetSelection.groups("egress"), definitions_loaded_once()
    with connect(world.settings.analytics_db, read_only=True, limits=Limits(threads=1)):
        first, again = (
            run_job(world.root, day, day, selection=egress, definitions=definitions, DATAOPS_DUCKDB_THREADS="1")
            for _ in "12"
        )
        assert first.build is not None and first.success
        assert again.build is not None and again.success
    done, redone = materialised(first.build), materialised(again.build)
    assert set(done) == KEYS and set(redone) == KEYS
    assert done[CRM_SYNC_KEY]["accounts_patched"] > 0 and redone[CRM_SYNC_KEY]["accounts_patched"] == 0
    assert done[EXPORTS_KEY]["changed"] and redone[EXPORTS_KEY]["already_exported"] is True
    assert done[DASHBOARD_KEY]["written"] is True and redone[DASHBOARD_KEY]["written"] is False
    assert set(done[CRM_SYNC_KEY]) == {
        "as_of_date", "accounts_considered", "accounts_patched", "fields_written", "requests", "retries",
        "bulk_jobs", "missing_accounts", "churn_tasks_opened",
    }  # fmt: skip
