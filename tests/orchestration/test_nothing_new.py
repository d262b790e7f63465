"""A landing that brought nothing new starts no build, and the days it re-landed stay published and checked
(docs/decisions/0057); anything new, or anything the warehouse has not yet built and published, starts one."""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy

from dataops.core.settings import Settings
from orchestration.lib.names import EXTRACTS_KEY, NOTHING_NEW_TAG, PUBLISHED_DAYS_KEY
from orchestration.lib.nothing_new import nothing_new
from tests.orchestration.conftest import SHORT, START, Ranged
from tests.pipeline import environment, run_job

# the range built for the events' test (tests/orchestration/conftest.py), shared with it: one worker builds it once
pytestmark = pytest.mark.xdist_group("events")

# the range's last day, landed, built and published; the day after it, simulated and never landed
DAY2 = START + dt.timedelta(days=SHORT - 1)
DAY3 = DAY2 + dt.timedelta(days=1)
LANDING = dg.AssetSelection.assets(EXTRACTS_KEY)


@functools.cache
def platform(root: Path) -> dg.Definitions:
    """The platform's definitions for ``root``, loaded once for the sequence's runs and sensor evaluations (each
    load takes a good part of a second). Loaded while a CRM is configured, as ``run_job`` loads them: the CRM
    resource then reads its address from the environment of each run."""
    from application.mock_sources import crm_environment
    from orchestration.definitions import defs

    with environment(DATAOPS_DATA_DIR=str(root)), crm_environment(Settings(root)):
        return defs()


def land(root: Path, instance: dg.DagsterInstance, day: dt.date) -> dg.DagsterRun:
    """``day`` landed in a run of its own, no build after it (``run_job``'s landing run)."""
    result = run_job(root, day, day, LANDING, instance=instance, definitions=functools.partial(platform, root))
    assert result.success and result.landing is not None and result.build is None
    run = instance.get_run_by_id(result.landing.run_id)
    assert run is not None
    return run


def sensor_says(root: Path, instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    sensor = platform(root).resolve_sensor_def("build_after_landing")
    run = dg.DagsterRun(job_name="daily_elt_job", run_id=run.run_id, tags=run.tags)  # as the schedule's run
    context = dg.build_run_status_sensor_context(
        sensor_name="build_after_landing",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name),
    )
    result = sensor(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason)
    return result


def landing_says(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    [event] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    materialization = event.event_log_entry.asset_materialization
    assert materialization is not None
    return str(materialization.metadata["build"].value)


def correct_a_record(root: Path, day: dt.date) -> None:
    """One ERP customer's (else product's) name corrected on ``day``: its record differs from the loaded one."""
    with sqlite3.connect(Settings(root).erp_db) as erp:
        for table, name in (("customers", "customer_name"), ("products", "description")):
            changed = erp.execute(
                f"update {table} set {name} = {name} || ' (corrected)' where rowid = "
                f"(select min(rowid) from {table} where updated_at >= ? and updated_at < ?)",
                [day.isoformat(), (day + dt.timedelta(days=1)).isoformat()],
            ).rowcount
            if changed:
                return
    raise AssertionError(f"no customer or product changed on {day} at this seed")


def test_a_day_landed_again_unchanged_starts_no_build_and_anything_new_starts_one(
    first_days: Ranged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sequence on one instance: the first days landed, built and published from scratch (the shared range)."""
    root, instance = first_days.root, first_days.instance
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(root))
    assert {START.isoformat(), DAY2.isoformat()} <= instance.get_materialized_partitions(PUBLISHED_DAYS_KEY)
    for _ in range(2):  # twice: the first re-landing's own version, never loaded, holds the same records
        run = land(root, instance, DAY2)
        assert nothing_new(instance, run.run_id) and run.tags[NOTHING_NEW_TAG] == "true"
        assert landing_says(instance, run).startswith("none: nothing new landed")
        assert isinstance(sensor_says(root, instance, run), dg.SkipReason)
    # a heartbeat tagged at the same moment wrote back the run's stored body without the tag (Dagster's
    # add_run_tags rewrites the body from its own earlier read): its tag rows still say so, and no build follows
    lost = run.with_tags({k: v for k, v in run.tags.items() if k != NOTHING_NEW_TAG})
    with instance.run_storage.connect() as conn:  # type: ignore[attr-defined]
        update = sqlalchemy.text("update runs set run_body = :body where run_id = :run_id")
        conn.execute(update, {"body": dg.serialize_value(lost), "run_id": run.run_id})
    stored = instance.get_run_by_id(run.run_id)
    assert stored is not None and NOTHING_NEW_TAG not in stored.tags
    assert nothing_new(instance, run.run_id) and isinstance(sensor_says(root, instance, stored), dg.SkipReason)
    # the UI's per-day status still says the day is in the published KPIs, checked
    assert DAY2.isoformat() in instance.get_materialized_partitions(PUBLISHED_DAYS_KEY)
    # on an instance whose per-day status does not have the day, it is not known as published: build
    with dg.DagsterInstance.ephemeral() as elsewhere:
        run = land(root, elsewhere, DAY2)
        assert f"{DAY2} is not in the published KPIs" in landing_says(elsewhere, run)
        assert isinstance(sensor_says(root, elsewhere, run), dg.RunRequest)
    # while another run is in progress its steps may be writing the warehouse: not read beside it, build
    busy = instance.add_run(
        dg.DagsterRun(
            job_name="build_job", run_id="0badc0de-0000-0000-0000-000000000000", status=dg.DagsterRunStatus.STARTED
        )
    )
    run = land(root, instance, DAY2)
    assert f"run {busy.run_id} is in progress" in landing_says(instance, run) and not nothing_new(instance, run.run_id)
    instance.delete_run(busy.run_id)
    # a record corrected in the source on that day is new data
    correct_a_record(root, DAY2)
    run = land(root, instance, DAY2)
    assert not nothing_new(instance, run.run_id) and "has other records than the loaded ones" in landing_says(
        instance, run
    )
    assert isinstance(sensor_says(root, instance, run), dg.RunRequest)
    # and so is a day never landed
    run = land(root, instance, DAY3)
    assert not nothing_new(instance, run.run_id) and "was never loaded" in landing_says(instance, run)
    assert isinstance(sensor_says(root, instance, run), dg.RunRequest)
