"""Changing a definition in the registry changes the truth and the models consistently, without SQL edits."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.transform.dbt import run_dbt
from registry import ENTERPRISE_FILE as REGISTRY_PATH
from registry.loader import load_registry
from source_systems.simulator.run import recompute_truth
from tests.pipeline import environment
from tests.transforms.test_kpis_equal_truth import compare, kpis

pytestmark = pytest.mark.xdist_group("built")


@pytest.mark.e2e
def test_a_stricter_delinquency_threshold_moves_truth_and_models_together(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(built, root)
    registry_file = tmp_path / "registry.yaml"
    data = yaml.safe_load(REGISTRY_PATH.read_text())
    data["delinquency"]["days_past_due"] = 10
    registry_file.write_text(yaml.safe_dump(data, sort_keys=False))
    before = kpis(root).filter(pl.col("kpi_name") == "delinquent_customers")["value"].sum()
    with environment(DATAOPS_REGISTRY=str(registry_file)):
        registry = load_registry()
        assert registry.delinquency_days == 10
        recompute_truth(Settings(root).sources_dir, registry)
        result = run_dbt(
            ["build", "--resource-type", "model", "--resource-type", "seed", "--full-refresh"],
            Settings(root),
            registry,
            in_process=True,
        )
        assert result.success, result.output[-3000:]
    after = kpis(root).filter(pl.col("kpi_name") == "delinquent_customers")["value"].sum()
    assert after > before  # the change took effect ...
    assert compare(root).height == 0  # ... in both, identically
