"""Jobs, the daily schedule and the accounting export sensor, evaluated directly."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs
from source_systems.accounting.export import write_day, write_reexport
from tests.pipeline import environment


@pytest.fixture()
def definitions(tmp_path: Path) -> dg.Definitions:
    with environment(DATAOPS_DATA_DIR=str(tmp_path), DATAOPS_START_DATE="2025-01-01"):
        return defs()


def test_jobs_are_named_by_scope_and_serialised(definitions: dg.Definitions) -> None:
    names = {job.name for job in definitions.jobs}  # type: ignore[union-attr]
    assert {"daily_elt_job", "build_job", "full_rebuild_job", "accounting_refresh_job"} <= names
    daily = definitions.resolve_job_def("daily_elt_job")
    assert daily.tags["dataops/writes"] == "build_warehouse"
    assert {n.name for n in daily.graph.nodes} == {"lake__extracts"} and daily.partitions_def is not None
    build = definitions.resolve_job_def("build_job")
    nodes = {n.name for n in build.graph.nodes}
    assert {"ingest_crm", "enterprise_model", "cleansing_gate", "publish__analytics_warehouse"} <= nodes
    assert build.partitions_def is None  # no job holds both: a partitioned run would plan every check per day


def test_a_build_follows_every_successful_landing_run_with_its_tags(definitions: dg.Definitions) -> None:
    sensor = definitions.resolve_sensor_def("build_after_landing")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.ephemeral() as instance:
        landing = dg.DagsterRun(
            job_name="daily_elt_job",
            run_id="1b2c3d4e-0000-0000-0000-000000000000",
            tags={
                "dagster/asset_partition_range_start": "2025-02-01",
                "dagster/asset_partition_range_end": "2025-02-03",
                "dataops/allow_volume_spike": "crm.leads",
            },
        )
        context = dg.build_run_status_sensor_context(
            sensor_name="build_after_landing",
            dagster_instance=instance,
            dagster_run=landing,
            dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name="daily_elt_job"),
        )
        request = sensor(context)
    assert isinstance(request, dg.RunRequest) and request.job_name in (None, "build_job")
    assert request.run_key == f"build-after-{landing.run_id}"  # once per landing run
    assert request.tags["dataops/after_landing"] == landing.run_id
    assert request.tags["dataops/window"] == "2025-02-01..2025-02-03"
    assert request.tags["dataops/allow_volume_spike"] == "crm.leads"  # a spike let through reaches the breakers


@pytest.mark.parametrize(
    ("job_name", "assets", "builds"),
    [
        ("__ASSET_JOB", [["lake", "extracts"]], True),  # a UI backfill or launch of the landing
        ("accounting_refresh_job", None, True),
        ("build_job", None, False),  # a build does not start another
        ("__ASSET_JOB", [["kpis", "kpi_daily"]], False),  # nor does a UI launch of other assets
    ],
)
def test_the_build_follows_landings_from_anywhere_and_nothing_else(
    definitions: dg.Definitions, job_name: str, assets: list[list[str]] | None, builds: bool
) -> None:
    sensor = definitions.resolve_sensor_def("build_after_landing")
    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.DagsterRun(
            job_name=job_name,
            run_id="5e6f7a8b-0000-0000-0000-000000000000",
            asset_selection=frozenset(dg.AssetKey(a) for a in assets) if assets else None,
            tags={"dagster/partition": "2025-02-04"},
        )
        context = dg.build_run_status_sensor_context(
            sensor_name="build_after_landing",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=job_name),
        )
        request = sensor(context)
    assert isinstance(request, dg.RunRequest) == builds
    if builds:
        assert isinstance(request, dg.RunRequest) and request.tags["dataops/window"] == "2025-02-04..2025-02-04"


def test_every_step_that_opens_the_build_warehouse_holds_its_pool(definitions: dg.Definitions) -> None:
    """Read-only included (the cleansing gate): a step outside the pool met a writer's file lock when two runs
    started together. Egress and the yesterday_published check read the analyst file only: no pool."""
    build = definitions.resolve_job_def("build_job")  # the landing (daily_elt_job) writes the lake only
    pools = {node.name: node.definition.pool for node in build.graph.nodes}
    outside = {name for name in pools if name == "egress" or name.endswith("_yesterday_published")}
    assert outside and {name: pools[name] for name in outside} == dict.fromkeys(outside)
    assert {name: pool for name, pool in pools.items() if name not in outside} == dict.fromkeys(
        set(pools) - outside, "build_warehouse"
    )
    assert "cleansing_gate" in pools


def test_the_schedule_runs_yesterday_at_two(definitions: dg.Definitions) -> None:
    schedule = definitions.resolve_schedule_def("daily_elt_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 3, 10, 2, tzinfo=dt.UTC),
        repository_def=definitions.get_repository_def(),
    )
    request = schedule.evaluate_tick(context).run_requests[0]  # type: ignore[index]
    assert request.partition_key == "2025-03-09" and request.run_key == "daily-2025-03-09"


def test_the_schedule_cron_is_configurable(tmp_path: Path) -> None:
    with environment(DATAOPS_DATA_DIR=str(tmp_path), DATAOPS_START_DATE="2025-01-01", DATAOPS_DAILY_CRON="30 4 * * *"):
        assert defs().resolve_schedule_def("daily_elt_schedule").cron_schedule == "30 4 * * *"


def test_the_sensor_fires_once_per_manifest_and_again_for_a_reexport(tmp_path: Path) -> None:
    import polars as pl

    exports = tmp_path / "sources" / "accounting" / "exports"
    exports.mkdir(parents=True)
    write_day(exports, dt.date(2025, 1, 1), {}, drifted=False)
    with environment(DATAOPS_DATA_DIR=str(tmp_path), DATAOPS_START_DATE="2025-01-01"):
        definitions = defs()
        sensor = definitions.resolve_sensor_def("accounting_export_sensor")
        with dg.DagsterInstance.ephemeral() as instance:

            def tick(cursor: str | None) -> dg.SensorExecutionData:  # type: ignore[name-defined]
                context = dg.build_sensor_context(
                    instance=instance, cursor=cursor, repository_def=definitions.get_repository_def()
                )
                return sensor.evaluate_tick(context)

            first = tick(None)  # existing exports are the daily job's backlog
            assert first.run_requests == [] and json.loads(first.cursor) == {"2025-01-01": 1}
            write_day(exports, dt.date(2025, 1, 2), {}, drifted=False)
            second = tick(first.cursor)
            assert [(r.partition_key, r.run_key) for r in second.run_requests] == [
                ("2025-01-02", "accounting-2025-01-02-v1")
            ]  # accounting_refresh_job lands the day; the build follows it
            third = tick(second.cursor)
            assert third.run_requests == []  # exactly once
            rows = pl.DataFrame(
                {
                    c: []
                    for c in ("payment_no", "invoice_no", "customer_id", "payment_date", "currency", "amount", "method")
                },
                schema_overrides={},
            ).cast(pl.String)
            write_reexport(exports, dt.date(2025, 1, 1), "payments", rows, generated_on=dt.date(2025, 1, 3))
            fourth = tick(third.cursor)
            assert [(r.partition_key, r.run_key) for r in fourth.run_requests] == [
                ("2025-01-01", "accounting-2025-01-01-v2")
            ]
            assert tick(fourth.cursor).run_requests == []


def test_freshness_is_judged_by_the_registry_everywhere(tmp_path: Path) -> None:
    """Dagster's freshness policy and the status judge by the registry's deadline: change it, both follow."""
    import yaml

    from dataops.core.settings import Settings
    from dataops.publish.status import freshness, judge_freshness
    from registry import ENTERPRISE_FILE

    data = yaml.safe_load(ENTERPRISE_FILE.read_text())
    data["freshness"]["published_by_hour_utc"] = 9
    changed = tmp_path / "enterprise.yaml"
    changed.write_text(yaml.safe_dump(data))
    with environment(DATAOPS_DATA_DIR=str(tmp_path), DATAOPS_START_DATE="2025-01-01", DATAOPS_REGISTRY=str(changed)):
        graph = defs().resolve_asset_graph()
        # `dataops status` (and the dashboard's strip) read the same deadline
        judged = freshness(Settings(tmp_path), dt.datetime(2025, 3, 10, 1, tzinfo=dt.UTC))
    assert judged.target == "yesterday (2025-03-09) published by 09:00 UTC" and not judged.is_fresh
    for key in (dg.AssetKey(["kpis", "kpi_daily"]), dg.AssetKey(["publish", "analytics_warehouse"])):
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy) and getattr(policy, "deadline_cron", None) == "0 9 * * *", key
    assert graph.get(dg.AssetKey(["marts", "fct_invoices"])).freshness_policy is None
    # the day before yesterday is still fresh before 09:00 (yesterday is not due yet), stale after
    as_of = dt.date(2025, 3, 8)
    assert judge_freshness(as_of, dt.datetime(2025, 3, 10, 8, 59, tzinfo=dt.UTC), 9).is_fresh
    assert not judge_freshness(as_of, dt.datetime(2025, 3, 10, 9, 0, tzinfo=dt.UTC), 9).is_fresh
    assert judge_freshness(dt.date(2025, 3, 9), dt.datetime(2025, 3, 10, 23, tzinfo=dt.UTC), 9).is_fresh
    assert not judge_freshness(None, dt.datetime(2025, 3, 10, 1, tzinfo=dt.UTC), 9).is_fresh


def test_the_code_location_loads_every_domain_folder(definitions: dg.Definitions) -> None:
    """Each folder of orchestration/defs contributes its definitions; the published warehouse has the check."""
    graph = definitions.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {"erp", "crm", "accounting", "staging", "marts", "kpis", "publish", "egress"} <= groups
    checks = {key.name for key in graph.asset_check_keys}
    assert {"yesterday_published", "customer_states_are_consistent", "volume_within_recent_range"} <= checks
