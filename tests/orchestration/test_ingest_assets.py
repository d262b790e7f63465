"""The ingestion assets in Dagster: a daily-partitioned landing, whose backfill of a range is one run, and one
unpartitioned asset per source table, loaded by one step per source (docs/decisions/0035)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from application.mock_sources import crm_environment
from dataops.core.settings import Settings
from dataops.ingest import lake
from orchestration.definitions import defs
from orchestration.lib.brakes import VOLUME_CHECK
from orchestration.lib.names import EXTRACTS_KEY
from quality.contracts import CONTRACTS, parents_first
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

pytestmark = pytest.mark.xdist_group("ingest_assets")

START = dt.date(2025, 1, 1)


@pytest.fixture(scope="module")
def sixty_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sixty")
    simulate(
        Settings(root).sources_dir,
        START + dt.timedelta(days=59),
        SimConfig(seed=3, scale=0.03, start=START, product_events=False),
    )
    return root


@pytest.fixture()
def definitions(sixty_days: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.Definitions]:
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(sixty_days))
    monkeypatch.delenv("DATAOPS_START_DATE", raising=False)
    with crm_environment(Settings(sixty_days)):
        yield defs()


def fail_table(monkeypatch: pytest.MonkeyPatch, name: str, error: Exception, step: str = "land") -> None:
    """The landing (``land``) or the load (``load_pending``) of one table raises ``error``; the others work."""
    import orchestration.lib.ingest as ingest_module

    real = getattr(ingest_module, step)

    def failing(settings, contract, *args, **kwargs):  # type: ignore[no-untyped-def]
        if contract.name == name:
            raise error
        return real(settings, contract, *args, **kwargs)

    monkeypatch.setattr(ingest_module, step, failing)


def landed_by(settings: Settings, run_id: str, day: dt.date) -> set[str]:
    """The tables a run landed a version of, covering ``day``."""
    return {
        c.name
        for c in CONTRACTS.values()
        if any(v.name.endswith(run_id[:8]) for v in lake.versions(settings.lake_dir, c.system, c.table, day))
    }


def job_of(definitions: dg.Definitions, name: str, selection: dg.AssetSelection) -> dg.JobDefinition:
    jobs = dg.Definitions(jobs=[dg.define_asset_job(name, selection=selection)])
    return dg.Definitions.merge(definitions, jobs).resolve_job_def(name)


LANDING = dg.AssetSelection.assets(EXTRACTS_KEY)
LOADS = dg.AssetSelection.groups("erp", "crm", "accounting")
RANGE = {"dagster/asset_partition_range_start": "2025-01-01", "dagster/asset_partition_range_end": "2025-03-01"}


def test_one_asset_per_source_table_keyed_like_dbt_sources(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    ingest_keys = {k for k in graph.get_all_asset_keys() if k.path[0] in {"erp", "crm", "accounting"}}
    assert ingest_keys == {dg.AssetKey([c.system, c.table]) for c in CONTRACTS.values()}
    for key in ingest_keys:
        node = graph.get(key)
        assert node.group_name == key.path[0]
        assert node.owners == ["team:data-platform"]
        assert {"parquet", "duckdb"} <= set(node.kinds)
        assert node.description and "\n" not in node.description
        assert node.partitions_def is None  # loaded from the lake, whatever days were landed
        assert EXTRACTS_KEY in node.parent_keys
    # children wait for their parents, so references resolve in the same run
    assert dg.AssetKey(["accounting", "invoices"]) in graph.get(dg.AssetKey(["accounting", "payments"])).parent_keys
    landing = graph.get(EXTRACTS_KEY)  # the one daily-partitioned asset that runs
    assert landing.backfill_policy == dg.BackfillPolicy.single_run()
    assert isinstance(landing.partitions_def, dg.DailyPartitionsDefinition)
    assert landing.partitions_def.start == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # the first export day
    assert landing.owners == ["team:data-platform"] and landing.description


def test_a_sixty_day_backfill_is_one_landing_run_then_one_load_per_source(definitions: dg.Definitions) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        landed = job_of(definitions, "landing_job", LANDING).execute_in_process(instance=instance, tags=RANGE)
        assert landed.success
        assert [e.step_key for e in landed.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS] == [
            "lake__extracts"
        ]
        days = landed.get_asset_materialization_events()
        assert len(days) == 60 and {e.partition for e in days} == set(RANGE.values()) | {e.partition for e in days}
        result = job_of(definitions, "load_job", LOADS).execute_in_process(instance=instance)
        assert result.success
        assert len(instance.get_runs()) == 2
    steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
    assert sorted(steps) == ["ingest_accounting", "ingest_crm", "ingest_erp"]  # once for the whole range
    breakers = [e for e in result.get_asset_check_evaluations() if e.check_name == VOLUME_CHECK]
    tables = sorted(dg.AssetKey([c.system, c.table]) for c in CONTRACTS.values())
    assert sorted(e.asset_key for e in breakers) == tables
    assert all(e.passed for e in breakers)  # ... and so did its volume circuit breaker, in the same step
    assert all(e.metadata["partitions_checked"].value == 60 for e in breakers)  # over every day it loaded
    materializations = result.get_asset_materialization_events()
    assert len(materializations) == len(CONTRACTS)  # one per table, not one per table and day
    leads = [m for m in materializations if m.asset_key == dg.AssetKey(["crm", "leads"])]
    metadata = leads[0].materialization.metadata
    assert metadata["partitions"].value == 60 and metadata["window"].value == "2025-01-01..2025-03-01"
    for name in ("rows_loaded", "rows_quarantined", "landed_versions", "watermark", "preview"):
        assert name in metadata
    # each business date of the window with its own figures
    by_day = [line.split("|") for line in metadata["rows_by_day"].value.splitlines() if "2025-" in line]
    assert [cells[1].strip() for cells in by_day][:: len(by_day) - 1] == ["2025-01-01", "2025-03-01"]
    assert len(by_day) == 60 and sum(int(cells[2]) for cells in by_day) == metadata["rows_loaded"].value


def test_a_source_ingests_every_table_after_the_tables_it_references() -> None:
    for system in ("erp", "crm", "accounting"):
        ordered = [c.table for c in parents_first([c for c in CONTRACTS.values() if c.system == system])]
        for position, contract in enumerate(CONTRACTS[f"{system}.{t}"] for t in ordered):
            assert {parent for parent, _ in contract.references.values()} <= set(ordered[:position])
    assert [c.table for c in parents_first([CONTRACTS["accounting.payments"], CONTRACTS["accounting.invoices"]])] == [
        "invoices",
        "payments",
    ]


def test_a_table_that_fails_to_land_fails_the_landing_by_name_and_the_rest_lands(
    definitions: dg.Definitions, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_table(monkeypatch, "accounting.invoices", ValueError("accounting export invoices_2025-01-01.csv: unreadable"))
    with dg.DagsterInstance.ephemeral() as instance:
        result = job_of(definitions, "landing_job", LANDING).execute_in_process(
            instance=instance, partition_key="2025-01-02", raise_on_error=False
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(failures) == 1 and not retried  # bad data is not retried: it fails the same way every time
    message = failures[0].step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert "accounting.invoices: ValueError: accounting export invoices_2025-01-01.csv: unreadable" in message
    landed = landed_by(Settings.from_env(), result.run_id, dt.date(2025, 1, 2))
    assert landed == set(CONTRACTS) - {"accounting.invoices"}  # the other tables are in the lake


def test_a_table_that_fails_to_load_fails_its_step_by_name_and_its_children_wait(
    definitions: dg.Definitions, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        assert (
            job_of(definitions, "landing_job", LANDING)
            .execute_in_process(instance=instance, partition_key="2025-01-03")
            .success
        )
        fail_table(monkeypatch, "accounting.invoices", ValueError("broken"), step="load_pending")
        result = job_of(definitions, "load_job", dg.AssetSelection.groups("accounting")).execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failures[0].step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert "accounting.invoices: ValueError: broken" in message
    assert "accounting.payments: not loaded: its parent invoices failed" in message
    loaded = {m.asset_key.path[1] for m in result.get_asset_materialization_events()}
    tables = {c.table for c in CONTRACTS.values() if c.system == "accounting"}
    children = {c.table for c in CONTRACTS.values() if ("invoices", "invoice_no") in c.references.values()}
    assert loaded == tables - {"invoices"} - children and loaded


def test_an_unavailable_source_is_retried_and_one_system_can_be_landed_alone(
    sixty_days: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestration.lib.ingest as ingest_module
    from dataops.ingest.connectors import SourceUnavailable

    monkeypatch.setenv("DATAOPS_DATA_DIR", str(sixty_days))
    monkeypatch.delenv("DATAOPS_START_DATE", raising=False)
    monkeypatch.setattr(ingest_module, "SOURCE_RETRY", dg.RetryPolicy(max_retries=1))  # no 10 s wait here
    unavailable = SourceUnavailable("the accounting manifest of 2025-01-04 lists no file for journal_lines")
    fail_table(monkeypatch, "accounting.journal_lines", unavailable)
    with crm_environment(Settings(sixty_days)):
        definitions = defs()  # built after the patch: the assets take the retry policy when they are defined
        with dg.DagsterInstance.ephemeral() as instance:
            source = job_of(definitions, "landing_job", LANDING).execute_in_process(
                instance=instance, partition_key="2025-01-04", raise_on_error=False
            )
            alone = definitions.resolve_job_def("accounting_refresh_job").execute_in_process(
                instance=instance, partition_key="2025-01-05", raise_on_error=False
            )
    retried = [e for e in source.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not source.success and len(retried) == 1  # a source that may come back gets its retries
    landed = landed_by(Settings(sixty_days), alone.run_id, dt.date(2025, 1, 5))
    assert {name.split(".")[0] for name in landed} == {"accounting"}  # the accounting job lands accounting only
    assert not alone.success  # (its journal lines fail here too)


def test_a_damaged_export_fails_its_step_at_once_naming_file_and_date(
    sixty_days: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checksum mismatch fails the same way on every attempt: no retry (each would wait 10-20 s)."""
    import shutil

    shutil.copytree(sixty_days, tmp_path, dirs_exist_ok=True)
    damaged = Settings(tmp_path).accounting_exports / "2025-01-05" / "fx_rates.csv"
    damaged.write_bytes(damaged.read_bytes() + b"\r\n")
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATAOPS_START_DATE", raising=False)
    with crm_environment(Settings(tmp_path)), dg.DagsterInstance.ephemeral() as instance:
        job = defs().resolve_job_def("accounting_refresh_job")  # the landing of the accounting export alone
        result = job.execute_in_process(instance=instance, partition_key="2025-01-05", raise_on_error=False)
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert not result.success and not retried and len(failures) == 1
    message = failures[0].step_failure_data.user_failure_data.description  # type: ignore[union-attr]
    assert f"{damaged} (accounting export, business date 2025-01-05): checksum differs" in message
