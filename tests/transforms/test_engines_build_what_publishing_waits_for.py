"""Publishing waits for every mart and KPI of the project (orchestration/defs/publish), and Dagster skips a step
whose upstream assets were not materialised, yet the run still reads as success. So a model that one engine's
dbt leaves disabled (a `config(enabled=...)` on the target) would silently stop every publish on that engine:
the usage models on Spark once did. Each engine's parse of the project must enable every model publishing
waits for (a parse per engine, no engine started, so independent of the engine the suite runs on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataops.core.settings import ENGINES, Settings, environ
from dataops.transform.runner import run_dbt
from orchestration.lib.dbt import dbt_project, published_model_keys, translator

# a dbt parse each (in this process on DuckDB): over 20 s on a loaded machine
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("engine", ENGINES)
def test_every_model_publishing_waits_for_is_built_on_each_engine(engine: str, tmp_path: Path) -> None:
    with environ({"DATAOPS_ENGINE": engine}):
        args = ["parse", "--target-path", str(tmp_path / "target")]
        result = run_dbt(args, Settings(tmp_path), in_process=True)  # a subprocess on Spark (runner.run_dbt)
    assert result.success, result.output[-3000:]
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    disabled = sorted(uid for uid in manifest["disabled"] if uid.startswith("model."))
    assert disabled == [], f"models the {engine} target disables: {disabled}"
    project = dbt_project()
    built = {
        translator().get_asset_spec(manifest, uid, project).key
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model"
    }
    waited_for = set(published_model_keys(project))
    assert waited_for and waited_for <= built, sorted(k.to_user_string() for k in waited_for - built)
