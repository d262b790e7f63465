"""The Dagster instance on PostgreSQL (DATAOPS_DAGSTER_STORAGE=postgres): the daily job and a backfill run
against a real server, with the same outcome as on SQLite, and a range run's events written in batches."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from typer.testing import CliRunner

from application.cli import app
from dataops.core.settings import environ
from orchestration.lib.instance import instance_environment

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.xdist_group("postgres")]


@pytest.fixture(scope="module")
def operated(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRunner, Path, list[str]]:
    root = tmp_path_factory.mktemp("pg")
    env = {"DATAOPS_DATA_DIR": str(root), "DAGSTER_HOME": "", "COLUMNS": "200"}
    runner = CliRunner(env=env | {"DATAOPS_DAGSTER_STORAGE": "postgres", "DATAOPS_PG_URL": postgres_url})
    # two days backfilled (a range run: two partitions in one step), then the third day's daily run
    made = runner.invoke(app, ["simulate", "--start", "2025-04-01", "--through", "2025-04-03", "--scale", "0.02"])
    assert made.exit_code == 0, made.output
    outputs = []
    for args in (["backfill", "--start", "2025-04-01", "--end", "2025-04-02"], ["run", "--date", "2025-04-03"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return runner, root, outputs


def test_the_backfill_and_the_daily_run_are_recorded_in_postgres(
    operated: tuple[CliRunner, Path, list[str]], postgres_url: str
) -> None:
    runner, root, (backfill, run) = operated
    assert "as of 2025-04-02" in backfill and "as of 2025-04-03" in run
    home = root / "dagster_home"
    assert not (home / "history").exists() and not (home / "schedules").exists()  # no SQLite beside it
    with (
        environ({"DATAOPS_DAGSTER_STORAGE": "postgres", "DATAOPS_PG_URL": postgres_url}),
        environ(instance_environment()),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        runs = instance.get_runs()
        # each command: its landing run, then the build that follows it (newest first)
        assert [r.job_name for r in runs] == ["build_job", "daily_elt_job"] * 2
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        kpis = instance.get_latest_materialization_event(dg.AssetKey(["kpis", "kpi_daily"]))
        assert kpis is not None and kpis.run_id == runs[0].run_id
    status = runner.invoke(app, ["status"])  # reads the latest run's checks from the same database
    assert status.exit_code == 0 and "Failed checks in the last run: none" in status.output, status.output


def test_a_range_run_writes_its_materialisations_in_batches(
    operated: tuple[CliRunner, Path, list[str]], postgres_url: str
) -> None:
    """A step over two partitions stores its two materialisations with one INSERT: rows written by one
    statement share their inserting transaction (xmin); written one by one, each has its own."""
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select e.asset_key, count(*), count(distinct e.xmin::text) from event_logs e join runs r "
            "on r.run_id = e.run_id where e.dagster_event_type = 'ASSET_MATERIALIZATION' "
            "and r.run_body::json->'tags'->>'dagster/asset_partition_range_start' = '2025-04-01' "
            "and e.partition is not null group by e.asset_key"
        )
        per_asset = cur.fetchall()
    assert per_asset, "the backfill materialised no partitioned asset"
    assert all(count == 2 and transactions == 1 for _, count, transactions in per_asset), per_asset
