"""The pipeline's brakes: DuckDB limits on every run, and the volume circuit breaker before publishing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect, scalar
from dataops.ingest.volume import ALLOW_TAG, check_volume
from dataops.transform.project import dbt_environment
from orchestration.lib.names import ANALYTICS_KEY
from orchestration.lib.resources import platform_resource
from quality.contracts import CONTRACTS
from registry.loader import ExpectedSpike, load_registry
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.pipeline import definitions_loaded_once, environment, run_job

START = dt.date(2025, 1, 1)
SPIKE = dt.date(2025, 1, 24)  # a campaign day: 15 times the usual leads
LEADS = CONTRACTS["crm.leads"]


def raw_leads(conn: duckdb.DuckDBPyConnection, per_day: dict[dt.date, int]) -> None:
    conn.execute("create schema raw")
    conn.execute("create table raw.crm__leads (_partition date)")
    for day, rows in per_day.items():
        conn.execute("insert into raw.crm__leads select ?::date from range(?)", [day, rows])


def test_a_partition_far_outside_its_recent_range_trips_the_breaker() -> None:
    registry = load_registry()
    days = {START + dt.timedelta(days=k): 140 + k % 3 for k in range(20)}
    with duckdb.connect() as conn:
        raw_leads(conn, {**days, SPIKE: 2000, SPIKE + dt.timedelta(days=1): 141, SPIKE + dt.timedelta(days=3): 141})
        spike = check_volume(conn, LEADS, SPIKE, SPIKE + dt.timedelta(days=1), registry)
        assert list(spike.tripped) == [SPIKE.isoformat()]
        assert "2000 rows, above 5x the recent range 140..142" in spike.tripped[SPIKE.isoformat()]
        allowed = check_volume(conn, LEADS, SPIKE, SPIKE, registry, allow={"crm.leads"})
        assert allowed.passed and "let through" in allowed.allowed[SPIKE.isoformat()]
        empty = check_volume(conn, LEADS, SPIKE + dt.timedelta(days=2), SPIKE + dt.timedelta(days=2), registry)
        assert not empty.passed  # an extract that came back empty is just as suspicious
        # a build that loaded the days each side of one not landed yet judges those days, not the empty one
        around = [SPIKE + dt.timedelta(days=k) for k in (1, 3)]
        loaded = check_volume(conn, LEADS, around[0], around[1], registry, only=set(around))
        assert loaded.passed and sorted(loaded.checked) == [d.isoformat() for d in around]
        young = check_volume(conn, LEADS, START + dt.timedelta(days=2), START + dt.timedelta(days=2), registry)
        assert young.passed  # too little history to judge


def test_a_spike_the_registry_expects_goes_through() -> None:
    registry = load_registry()
    expected = dataclasses.replace(
        registry.volume_breaker, expected_spikes=(ExpectedSpike("crm.leads", SPIKE, "trade show"),)
    )
    registry = dataclasses.replace(registry, volume_breaker=expected)
    with duckdb.connect() as conn:
        raw_leads(conn, {**{START + dt.timedelta(days=k): 40 for k in range(20)}, SPIKE: 600})
        outcome = check_volume(conn, LEADS, SPIKE, SPIKE, registry)
    assert outcome.passed and "expected: trade show" in outcome.allowed[SPIKE.isoformat()]


def test_every_pipeline_connection_runs_under_duckdb_limits(tmp_path: Path) -> None:
    with (
        environment(DATAOPS_DUCKDB_MEMORY_LIMIT="300MB", DATAOPS_DUCKDB_THREADS="1"),
        dg.build_resources({"platform": platform_resource()}) as resources,
    ):
        limits = resources.platform.limits
    assert limits == Limits(memory_limit="300MB", threads=1)
    with connect(tmp_path / "w.duckdb", limits=limits) as conn:
        assert scalar(conn, "select current_setting('threads')") == 1
        assert str(scalar(conn, "select current_setting('memory_limit')")).startswith("286")
    env = dbt_environment(Settings(tmp_path), limits)  # and dbt's own connection, through its profile
    assert env["DATAOPS_DUCKDB_MEMORY_LIMIT"] == "300MB" and env["DATAOPS_DUCKDB_THREADS"] == "1"
    profile = yaml.safe_load(Path("transforms/profiles.yml").read_text())["dataops"]["outputs"]["build"]
    assert "DATAOPS_DUCKDB_MEMORY_LIMIT" in profile["settings"]["memory_limit"]
    assert "DATAOPS_DUCKDB_THREADS" in profile["settings"]["threads"]


@pytest.mark.xdist_group("brakes")
def test_a_simulated_volume_spike_halts_the_run_before_publishing_and_the_override_lets_it_through(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    settings = Settings(root)
    simulate(
        settings.sources_dir,
        SPIKE + dt.timedelta(days=1),
        SimConfig(seed=5, scale=0.04, start=START, lead_spike_date=SPIKE, lead_spike_factor=15, product_events=False),
    )
    # The breaker's history is what was extracted; landing it is enough (no need to model and publish it).
    history = dg.AssetSelection.groups("lake", "erp", "crm", "accounting")
    # the three runs share one data directory: its definitions are loaded once (by the first run, in its
    # environment; the CRM resource reads its address from each run's)
    platform = definitions_loaded_once()
    assert run_job(root, START, SPIKE - dt.timedelta(days=1), selection=history, definitions=platform).success

    halted = run_job(root, SPIKE, SPIKE, definitions=platform)

    assert not halted.success
    failed = {e.asset_key: e for e in halted.get_asset_check_evaluations() if not e.passed}
    assert {e.check_name for e in failed.values()} == {"volume_within_recent_range"}
    tripped = failed[dg.AssetKey(["crm", "leads"])]  # (a campaign's leads also swell their history)
    description = tripped.description or ""
    assert "volume circuit breaker tripped on crm.leads" in description and ALLOW_TAG in description
    assert ANALYTICS_KEY not in {e.asset_key for e in halted.get_asset_materialization_events()}
    assert not settings.analytics_db.exists()  # nothing reached analysts

    # the next day's run builds the halted day too: its breaker judges that day again, and halts again
    after = SPIKE + dt.timedelta(days=1)
    next_day = run_job(root, after, after, definitions=platform)
    assert not next_day.success
    again = {e.asset_key: e for e in next_day.get_asset_check_evaluations() if not e.passed}
    assert "volume circuit breaker tripped on crm.leads" in (again[dg.AssetKey(["crm", "leads"])].description or "")
    assert not settings.analytics_db.exists()

    let_through = run_job(root, SPIKE, SPIKE, tags={ALLOW_TAG: "crm.leads,crm.lead_history"}, definitions=platform)

    assert let_through.success
    passed = [e for e in let_through.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(["crm", "leads"])]
    assert passed and all(e.passed for e in passed) and "let through" in (passed[0].description or "")
    # the halted day was landed again as it was: nothing loaded, every unbuilt day judged again, named in metadata
    (leads,) = [
        e for e in let_through.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["crm", "leads"])
    ]
    metadata = {k: v.value for k, v in leads.materialization.metadata.items()}
    assert metadata["loaded"] == "nothing new landed" and f"..{after} (" in metadata["judged_unbuilt_days"]
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        assert scalar(conn, "select max(as_of_date) from publish.publish_log") == after  # both days built
