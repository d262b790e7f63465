"""Changing a definition in the registry changes the truth and the models consistently, without SQL edits."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.transform.runner import run_dbt
from registry import ENTERPRISE_FILE as REGISTRY_PATH
from registry.loader import load_registry
from source_systems.simulator.run import recompute_truth
from tests.pipeline import environment
from tests.transforms.test_kpis_equal_truth import compare, kpis

pytestmark = pytest.mark.xdist_group("built")


@pytest.mark.e2e
def test_a_stricter_delinquency_threshold_and_state_rule_move_truth_and_models_together(
    built: Path, tmp_path: Path
) -> None:
    """Two definitions change at once: delinquency after 10 days, and a delinquent customer is not active."""
    root = tmp_path / "data"
    shutil.copytree(built, root)
    registry_file = tmp_path / "registry.yaml"
    data = yaml.safe_load(REGISTRY_PATH.read_text())
    data["delinquency"]["days_past_due"] = 10
    assert data["customer_states"][0]["name"] == "active"
    data["customer_states"][0]["when"] = "live_contracts > 0 and not delinquent"
    registry_file.write_text(yaml.safe_dump(data, sort_keys=False))
    before = kpis(root).group_by("kpi_name").agg(pl.col("value").sum())
    with environment(DATAOPS_REGISTRY=str(registry_file)):
        registry = load_registry()
        assert registry.delinquency_days == 10
        recompute_truth(Settings(root).sources_dir, registry)
        # kpi_daily and what it reads, the registry's seeds included: the KPIs compared below are its rows
        result = run_dbt(
            [
                "build",
                "--select",
                "+kpi_daily",
                "--resource-type",
                "model",
                "--resource-type",
                "seed",
                "--full-refresh",
            ],
            Settings(root),
            registry,
            in_process=True,
            # its own target folder: a parse under other vars left in the project's target/ would make the next
            # data directory that has no parse of its own parse the whole project again
            target=tmp_path / "target",
        )
        assert result.success, result.output[-3000:]
    after = kpis(root).group_by("kpi_name").agg(pl.col("value").sum())
    moved = before.join(after, on="kpi_name", suffix="_after").filter(pl.col("value") != pl.col("value_after"))
    assert {"delinquent_customers", "active_customers"} <= set(moved["kpi_name"])  # the changes took effect ...
    assert compare(root).height == 0  # ... in both, identically
