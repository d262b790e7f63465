"""The operating commands, end to end on a tiny simulated business: backfill, run, status, kpis."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from application.cli import app
from orchestration.lib.nothing_new import nothing_new
from tests.application.conftest import Case, copy

# the state is the recovery tests' (tests/application/conftest.py): in their group, built once
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("recovery")]


@pytest.fixture(scope="module")
def operated(clean: Case, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRunner, Path, list[str]]:
    """A copy of the recovery tests' ``clean``: two days backfilled, then the third run, by the real `dataops`
    (tests/application/conftest.py); what the two commands printed."""
    root = copy(clean, tmp_path_factory.mktemp("cli")).root
    runner = CliRunner(env={"DATAOPS_DATA_DIR": str(root), "DAGSTER_HOME": "", "COLUMNS": "200"})
    return runner, root, list(clean.said)


def test_backfill_and_run_report_their_publish_and_are_recorded_for_the_ui(
    operated: tuple[CliRunner, Path, list[str]],
) -> None:
    _, root, (backfill, run) = operated
    assert "daily_elt_job 2025-04-01..2025-04-02" in backfill and "succeeded" in backfill
    assert "as of 2025-04-02" in backfill
    assert "as of 2025-04-03" in run
    for output in (backfill, run):  # no library warnings (dbt's lines: tests/application/conftest.py)
        assert "BetaWarning" not in output and "SupersessionWarning" not in output
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        runs = list(reversed(instance.get_runs()))  # each command: its landing run, then the build that follows it
        assert [r.job_name for r in runs] == ["daily_elt_job", "build_job"] * 2
        days, day = runs[0], runs[2]
        assert (days.tags["dagster/asset_partition_range_start"], days.tags["dagster/asset_partition_range_end"]) == (
            "2025-04-01",
            "2025-04-02",
        )
        assert day.tags["dagster/partition"] == "2025-04-03"  # like the schedule's run of a day
        assert [r.tags["dataops/after_landing"] for r in runs[1::2]] == [r.run_id for r in runs[::2]]
        assert [r.tags["dataops/window"] for r in runs[1::2]] == ["2025-04-01..2025-04-02", "2025-04-03..2025-04-03"]
        for run in runs:  # attributed to the code location, as the UI's and the schedule's runs are
            assert run.remote_job_origin is not None and run.remote_job_origin.location_name == "orchestration"
            assert run.tags[".dagster/repository"] == "__repository__@orchestration"
            assert run.tags["dataops/writes"] == "build_warehouse" and run.tags["dataops/launched_by"] == "dataops cli"


def test_status_shows_publish_freshness_checks_and_quarantine(operated: tuple[CliRunner, Path, list[str]]) -> None:
    runner, _, _ = operated
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    for text in (
        "Last publish",
        "as of business date 2025-04-03",
        "stale",
        "KPIs on 2025-04-03",
        "mrr_usd",
        "Failed checks in the last run: none",
        "build_job 2025-04-03): SUCCESS",  # the last run: the build after the landing of 2025-04-03
        "Quarantined rows:",
    ):
        assert text in result.output, text


def table_values(output: str) -> dict[str, str]:
    """KPI -> value as printed in a KPI table (rows of kpi, value, unit, final)."""
    values = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 4 and cells[0] not in ("kpi", ""):
            values[cells[0]] = cells[1]
    return values


def test_kpis_in_each_format(operated: tuple[CliRunner, Path, list[str]]) -> None:
    runner, _, _ = operated
    as_json = json.loads(runner.invoke(app, ["kpis", "--format", "json"]).stdout)
    assert {tuple(sorted(row)) for row in as_json} == {("date", "is_final", "kpi", "unit", "value")}
    assert {row["date"] for row in as_json} == {"2025-04-03"} and len(as_json) == 15
    assert as_json[0]["is_final"] is False
    units = {row["kpi"]: row["unit"] for row in as_json}
    counts = {kpi for kpi, unit in units.items() if unit == "count"}  # the registry's unit says which are counts
    assert counts >= {"active_customers", "mqls", "opportunities_won"} and len(counts) < len(units)
    assert all(isinstance(r["value"], int) == (r["kpi"] in counts) for r in as_json)  # counts whole, amounts not
    rows = list(
        csv.DictReader(io.StringIO(runner.invoke(app, ["kpis", "--date", "2025-04-01", "--format", "csv"]).stdout))
    )
    assert len(rows) == 15 and rows[0]["date"] == "2025-04-01"
    assert all(("." not in r["value"]) == (r["kpi"] in counts) for r in rows)
    assert all(len(r["value"].split(".")[1]) == 2 for r in rows if r["kpi"] not in counts)
    table = runner.invoke(app, ["kpis"]).output
    assert "KPIs on 2025-04-03" in table and "active_customers" in table
    status = runner.invoke(app, ["status"]).output
    for output in (table, status):
        shown = table_values(output)
        assert set(shown) == set(units), output
        assert all(("." not in value) == (kpi in counts) for kpi, value in shown.items()), output
    # status shows the very same table as kpis: one rendering
    kpi_lines = [line for line in table.splitlines() if "│" in line]
    assert kpi_lines and all(line in status for line in kpi_lines)
    bad = runner.invoke(app, ["kpis", "--format", "xml"])
    assert bad.exit_code == 2 and "table, csv, json" in bad.output


def test_a_date_outside_the_partitions_is_refused_clearly(operated: tuple[CliRunner, Path, list[str]]) -> None:
    runner, _, _ = operated
    result = runner.invoke(app, ["run", "--date", "2024-01-01"])
    assert result.exit_code == 1
    assert "outside the partitions 2025-04-01" in result.output


def test_a_day_run_again_with_nothing_new_lands_it_and_starts_no_build(
    operated: tuple[CliRunner, Path, list[str]],
) -> None:
    """The last test of the module: it adds a run. The sources have not moved since the day's run, so its
    landing brings nothing new (docs/decisions/0057): no build follows, the day stays published and checked."""
    runner, root, _ = operated
    again = runner.invoke(app, ["run", "--date", "2025-04-03"])
    assert again.exit_code == 0, again.output
    assert "nothing new landed, no build" in again.output
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        latest = instance.get_runs(limit=2)
        assert [r.job_name for r in latest] == ["daily_elt_job", "build_job"]
        # read as the sensor and the command read it: from the run's tag rows (a heartbeat's tagging at the same
        # moment can write the run's body back without it: orchestration/lib/nothing_new.py; seen in CI)
        assert nothing_new(instance, latest[0].run_id)
        assert "2025-04-03" in instance.get_materialized_partitions(dg.AssetKey(["publish", "published_days"]))
