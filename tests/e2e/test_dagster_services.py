"""The platform as its users meet it: the real webserver and daemon, driven through GraphQL and a browser."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import subprocess
from typing import Any

import duckdb
import pytest

from dataops.core.settings import PROJECT_ROOT
from tests.e2e.conftest import BIN, GROUP, OUTPUT, START, Services, wait_for
from tests.local import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, GROUP]
REPO = {"repositoryLocationName": "orchestration", "repositoryName": "__repository__"}
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def asset_graph(services: Services) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    data = services.graphql("{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    return {tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]} for n in data["assetNodes"]}


def test_the_ui_lists_every_asset_with_lineage_from_source_to_kpi(services: Services) -> None:
    graph = asset_graph(services)
    assert ("crm", "leads") in graph and ("kpis", "kpi_daily") in graph
    upstream, todo = set(), [("kpis", "kpi_daily")]
    while todo:
        for parent in graph[todo.pop()]:
            if parent not in upstream:
                upstream.add(parent)
                todo.append(parent)
    assert {
        ("crm", "leads"),
        ("erp", "contracts"),
        ("accounting", "journal_lines"),
        ("staging", "stg_crm__leads"),
        ("marts", "fct_customer_states_daily"),
    } <= upstream
    assert ("kpis", "kpi_daily") in graph[("publish", "analytics_warehouse")]


def test_the_schedule_and_the_sensor_are_there_and_running(services: Services) -> None:
    data = services.graphql(
        """
        query($selector: RepositorySelector!) {
          schedulesOrError(repositorySelector: $selector) { ... on Schedules { results {
            name cronSchedule executionTimezone scheduleState { status } } } }
          sensorsOrError(repositorySelector: $selector) { ... on Sensors { results {
            name sensorState { status } } } }
        }""",
        {"selector": REPO},
    )
    schedules = {s["name"]: s for s in data["schedulesOrError"]["results"]}
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    assert schedules["daily_elt_schedule"]["cronSchedule"] == "0 2 * * *"
    assert schedules["daily_elt_schedule"]["scheduleState"]["status"] == "RUNNING"
    assert sensors["accounting_export_sensor"]["sensorState"]["status"] == "RUNNING"
    assert sensors["build_after_landing"]["sensorState"]["status"] == "RUNNING"


def runs(services: Services) -> list[dict[str, Any]]:
    data = services.graphql("""{ runsOrError { ... on Runs { results {
        runId jobName status startTime endTime tags { key value } } } } }""")
    return list(data["runsOrError"]["results"])


def launch_daily(services: Services, day: dt.date) -> str:
    launched = services.graphql(
        """
        mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {**REPO, "jobName": "daily_elt_job"},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day.isoformat()}]},
            }
        },
    )
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    return str(launched["launchRun"]["run"]["runId"])


def finished(services: Services, run_ids: set[str]) -> list[dict[str, Any]]:
    if not run_ids:  # nothing to wait for (a test run alone): an empty list would read as not finished yet
        return []

    def done() -> list[dict[str, Any]] | None:
        mine = [r for r in runs(services) if r["runId"] in run_ids]
        return mine if len(mine) == len(run_ids) and all(r["status"] in DONE for r in mine) else None

    result: list[dict[str, Any]] = wait_for(done, 600, f"runs {sorted(run_ids)}", interval=2)
    failed = [r for r in result if r["status"] != "SUCCESS"]
    assert not failed, (failed, (services.logs / "daemon.log").read_text()[-3000:])
    return result


def published_dates(services: Services) -> set[dt.date]:
    with duckdb.connect(str(services.settings.analytics_db), read_only=True) as conn:
        return {d for (d,) in conn.execute("select distinct date_day from kpis.kpi_daily").fetchall()}


def tag(run: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def builds_after(services: Services, landing_ids: set[str]) -> list[dict[str, Any]]:
    """The build runs the ``build_after_landing`` sensor launched after these landing runs, once finished."""

    def launched() -> set[str] | None:
        ids = {r["runId"] for r in runs(services) if tag(r, "dataops/after_landing") in landing_ids}
        return ids if len(ids) == len(landing_ids) else None

    return finished(services, wait_for(launched, 600, f"builds after {sorted(landing_ids)}", interval=2))


def published_days_status(services: Services) -> set[str]:
    """The days the UI shows as in the published KPIs: ``publish/published_days``'s materialised partitions."""
    data = services.graphql(
        """{ assetNodes(assetKeys: [{path: ["publish", "published_days"]}]) { assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { startKey endKey status } } } } }"""
    )
    ranges = data["assetNodes"][0]["assetPartitionStatuses"]["ranges"]
    days: set[str] = set()
    for r in ranges:
        if r["status"] == "MATERIALIZED":
            first, last = dt.date.fromisoformat(r["startKey"]), dt.date.fromisoformat(r["endKey"])
            days |= {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    return days


def cli_run(services: Services, day: dt.date) -> subprocess.Popen[str]:
    """`dataops run --date day` against the services' instance, as an operator at a terminal would."""
    return subprocess.Popen(
        [str(BIN / "dataops"), "run", "--date", day.isoformat()],
        env=services.env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def where_operators_look(services: Services, output: str, day: dt.date) -> None:
    """A run started from the command line is on its job's page (which lists the code location's runs), on
    the timeline (which needs the run's code location) and re-executable without a warning (same code
    location, same job snapshot)."""
    found = re.search(r"landing run ([0-9a-f-]{36}) and build run [0-9a-f-]{36} succeeded", output)
    assert found, output
    run_id = found.group(1)
    job = services.graphql(
        """query($selector: PipelineSelector!) { pipelineOrError(params: $selector) {
          ... on Pipeline { pipelineSnapshotId runs { runId } } } }""",
        {"selector": {**REPO, "pipelineName": "daily_elt_job"}},
    )["pipelineOrError"]
    assert run_id in {r["runId"] for r in job["runs"]}
    run = services.graphql(
        """query($id: ID!) { runOrError(runId: $id) { ... on Run {
          jobName pipelineSnapshotId status repositoryOrigin { repositoryLocationName repositoryName }
          tags { key value } } } }""",
        {"id": run_id},
    )["runOrError"]
    assert run["status"] == "SUCCESS" and run["jobName"] == "daily_elt_job"
    assert run["repositoryOrigin"] == REPO
    assert run["pipelineSnapshotId"] == job["pipelineSnapshotId"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == day.isoformat()
    assert tags["dataops/writes"] == "build_warehouse"


def launch_backfill(services: Services, days: list[dt.date]) -> str:
    """A backfill of lake/extracts over ``days``, launched as the job's page launches it (Jobs, daily_elt_job,
    Materialize all)."""
    backfill = services.graphql(
        """
        mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
          __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {"partitionSetName": "daily_elt_job_partition_set", "repositorySelector": REPO},
                "assetSelection": [{"path": ["lake", "extracts"]}],
                "partitionNames": [d.isoformat() for d in days],
                "fromFailure": False,
            }
        },
    )
    assert backfill["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", backfill
    return str(backfill["launchPartitionBackfill"]["backfillId"])


def backfill_status(services: Services, backfill_id: str) -> str | None:
    """The backfill's status once it has ended (None while it goes on)."""
    status = services.graphql(
        """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
        ... on PartitionBackfill { status } } }""",
        {"id": backfill_id},
    )["partitionBackfillOrError"]["status"]
    return str(status) if status.startswith("COMPLETED") or status in {"FAILED", "CANCELED"} else None


def run_of(services: Services, key: str, value: str, started: bool = False) -> dict[str, Any] | None:
    """The run tagged ``key=value`` once it exists (``started``: once the queue has let it start)."""
    mine = [r for r in runs(services) if tag(r, key) == value]
    return mine[0] if mine and not (started and mine[0]["status"] == "QUEUED") else None


@pytest.mark.reliability
def test_a_backfill_and_runs_from_the_command_line_and_the_queue_all_succeed_in_turn(services: Services) -> None:
    """A `dataops run` of the first day; while it holds the warehouse, a three-day backfill launched as the
    job's page launches it and a run launched as the schedule launches it queue together behind it; once the
    backfill's run has started, a second `dataops run`. The backfill is one landing run of the range, as
    daily_elt_job with the platform's run tags (not Dagster's implicit __ASSET_JOB), and its build publishes
    its days. Each command-line run waits for the build warehouse (no lock error anywhere); the two queued runs
    and the builds the sensor starts after them run one after the other (the two are let out of the queue
    together, so a queue that let both start would show); all succeed, every day is published and shown so in
    the UI, and the command line's runs are where operators look. The first day lands first (the products,
    which later days' contracts name, are delivered on it: a later day built alone fails dbt's relationship
    tests), then the backfill's days. (It used to be two tests, the backfill, then two `dataops run` and two
    queued runs: one landing and build more.)"""
    finished(services, {r["runId"] for r in runs(services)})  # whatever ran before it (also when run alone)
    first, backfilled = START, [START + dt.timedelta(days=i) for i in (1, 2, 3)]
    later, queued_day = START + dt.timedelta(days=4), START + dt.timedelta(days=5)
    terminals = [cli_run(services, first)]
    wait_for(lambda: run_of(services, "dagster/partition", first.isoformat()), 600, "the first day's run", 0.5)
    backfill_id = launch_backfill(services, backfilled)
    wait_for(lambda: run_of(services, "dagster/backfill", backfill_id), 600, "the backfill's run", 0.5)
    daily = launch_daily(services, queued_day)
    wait_for(lambda: run_of(services, "dagster/backfill", backfill_id, started=True), 600, "the backfill to start")
    terminals.append(cli_run(services, later))
    outputs = []
    for terminal in terminals:
        output, _ = terminal.communicate(timeout=1800)
        assert terminal.returncode == 0, output
        assert "Could not set lock" not in output
        outputs.append(output)

    status = wait_for(lambda: backfill_status(services, backfill_id), 600, "the backfill", interval=3)
    assert status in {"COMPLETED", "COMPLETED_SUCCESS"}
    backfill_runs = [r for r in runs(services) if tag(r, "dagster/backfill") == backfill_id]
    assert len(backfill_runs) == 1 and backfill_runs[0]["status"] == "SUCCESS"  # three days, one landing run
    (landing,) = backfill_runs
    assert landing["jobName"] == "daily_elt_job" and tag(landing, "dataops/writes") == "build_warehouse"
    queued = {landing["runId"], daily}
    builds = builds_after(services, queued)  # each queued landing run is followed by its build
    (backfill_build,) = [b for b in builds if tag(b, "dataops/after_landing") == landing["runId"]]
    assert tag(backfill_build, "dataops/window") == f"{backfilled[0]}..{backfilled[-1]}"
    every = sorted(finished(services, queued) + builds, key=lambda r: r["startTime"])
    for before, after in itertools.pairwise(every):
        assert after["startTime"] >= before["endTime"]  # one writer at a time: each waited in the queue
    days = [first, *backfilled, later, queued_day]
    assert published_dates(services) >= set(days)
    assert published_days_status(services) >= {d.isoformat() for d in days}  # the per-day status in the UI
    for log in ("daemon.log", "webserver.log"):
        assert "Could not set lock" not in (services.logs / log).read_text()
    for output, day in zip(outputs, [first, later], strict=True):
        where_operators_look(services, output, day)


def test_the_asset_graph_page_renders_in_a_browser(services: Services) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(
                f"{services.url}/locations/orchestration/asset-groups/kpis", wait_until="networkidle", timeout=90_000
            )
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.first.click()
            page.get_by_text("kpi_daily", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(OUTPUT / "dagster-asset-graph.png"))
        finally:
            browser.close()
    assert (OUTPUT / "dagster-asset-graph.png").stat().st_size > 10_000
