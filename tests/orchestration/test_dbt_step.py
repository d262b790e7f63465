"""The dbt step on a copy of the shared build: each node's events are written while dbt runs, with the row
counts dbt logged, each model's check once all its tests have run, and a failed node fails the step after
what succeeded is reported (docs/decisions/0080)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dataops.core.settings import Settings
from tests.conftest import BUILT_DAYS, BUILT_START
from tests.pipeline import run_job

pytestmark = pytest.mark.xdist_group("built")

END = BUILT_START + dt.timedelta(days=BUILT_DAYS - 1)
INVOICES = dg.AssetKey(["staging", "stg_accounting__invoices"])  # incremental, with a post-hook that deletes
FX_RATES = dg.AssetKey(["staging", "stg_accounting__fx_rates"])  # a table
COUNTRIES = dg.AssetKey(["reference", "country_codes"])  # a seed, its rules in one test (column_rules: 0095, 0098)
FCT_INVOICES = dg.AssetKey(["marts", "fct_invoices"])  # after stg_accounting__invoices; made to fail here
BROKEN = "intermediate.int_bill_to_customers_resolved"  # what fct_invoices reads besides them (not selected)


def test_each_node_is_reported_while_dbt_runs_and_a_failed_node_fails_the_step_after(
    built: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns("*-*-*-*-*"))  # not the build's dbt artefacts
    settings = Settings(root)
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute(f"drop table {BROKEN}")
    keys = [INVOICES, FX_RATES, COUNTRIES, FCT_INVOICES]
    selection = dg.AssetSelection.assets(*keys).without_checks() | dg.AssetSelection.checks(
        *[dg.AssetCheckKey(key, "dbt_tests") for key in keys]
    )
    config: dict[str, object] = {"ops": {"enterprise_model": {"config": {"rebuild_unchanged": True}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_job(root, END, END, selection=selection, run_config=config, instance=instance)
        logs = instance.all_logs(result.run_id)

    assert not result.success
    # dbt ran in the dataops-dbt the run started before its first step, dbt imported (docs/decisions/0092)
    messages = [entry.user_message or "" for entry in logs]
    early = next(m for m in messages if m.startswith("dataops-dbt started (pid "))
    pid = early.split("(pid ")[1].split(")")[0]
    assert any(m.endswith(f"in dataops-dbt started with the run (pid {pid})") for m in messages), messages
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "model.dataops.fct_invoices" in str(failure.step_failure_data.user_failure_data.description)  # type: ignore[union-attr]

    materialised = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events() if e.asset_key
    }
    assert set(materialised) == {INVOICES, FX_RATES, COUNTRIES}  # what succeeded, reported before the failure
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        for key, metadata in materialised.items():
            (rows,) = conn.execute(f'select count(*) from "{key.path[0]}"."{key.path[1]}"').fetchone()  # type: ignore[misc]
            assert metadata["dagster/row_count"].value == rows > 0, key  # dbt's count of the table it built

    # written while dbt ran: stg_accounting__invoices's materialisation before the step read that dbt had failed
    # fct_invoices, which dbt built after it and its tests
    assert [label for label in map(_label, logs) if label] == ["invoices", "fct_invoices failed", "step failed"]

    manifest = json.loads((settings.dbt_runs_dir / result.run_id / "manifest.json").read_text())
    checks = {e.asset_key: dict(e.metadata["tests"].value) for e in result.get_asset_check_evaluations()}  # type: ignore[arg-type]
    assert set(checks) == {INVOICES, FX_RATES, COUNTRIES}  # fct_invoices's tests were skipped: no check
    for key, tests in checks.items():
        unique_id = f"{'seed' if key == COUNTRIES else 'model'}.dataops.{key.path[-1]}"
        attached = {n["name"] for n in manifest["nodes"].values() if n.get("attached_node") == unique_id}
        assert set(tests) == attached and attached, key  # every test of the model in its one check
    assert len(checks[COUNTRIES]) == 1


def _label(entry: dg.EventLogEntry) -> str | None:
    event, message = entry.dagster_event, entry.user_message or ""
    if event is None:  # the step's log
        return "fct_invoices failed" if "ERROR" in message and "fct_invoices" in message else None
    if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key == INVOICES:
        return "invoices"
    return "step failed" if event.event_type == dg.DagsterEventType.STEP_FAILURE else None
