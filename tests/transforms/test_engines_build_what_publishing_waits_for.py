"""Publishing waits for every mart and KPI of the project (orchestration/defs/publish), and Dagster skips a step
whose upstream assets were not materialised, yet the run still reads as success. So a model that one engine's
dbt leaves disabled (a `config(enabled=...)` on the target) would silently stop every publish on that engine:
the usage models on Spark once did. Each engine's parse of the project must enable every model publishing
waits for (a parse per engine, no engine started, so independent of the engine the suite runs on).

The parse each case reads is one the suite makes anyway: on DuckDB the project's own manifest, which every
Dagster code location prepares (``dbt_project()``, a parse only when the project changed); on Spark the
manifest of the Spark module's build (tests/spark), whose dbt step parsed the project on Spark's target. A
parse of their own cost these tests about 30 CPU-s, on Spark a whole parse in a subprocess (docs/testing.md).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from dagster_dbt import DbtProject

from dataops.core.settings import ENGINES, environ
from dataops.governance.metadata import load_manifest
from orchestration.lib.dbt import dbt_project, published_model_keys, translator

# a dbt parse where the project's manifest is not current (the project changed, or the last parse was Spark's).
# On the Spark module's worker: its run replaces the project's manifest with a Spark parse, which must not land
# between this test's parse and its read of the manifest on another worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("spark")]

# the Spark case runs in tests/spark, on the manifest of the Spark run that module makes anyway
OWN_PARSE = [engine for engine in ENGINES if engine != "spark"]


def assert_every_model_publishing_waits_for_is_built(
    manifest: dict[str, Any], engine: str, project: DbtProject, waited_for: set[dg.AssetKey]
) -> None:
    """``manifest`` (a parse on ``engine``'s target) disables no model and holds every model publishing waits
    for (``waited_for``: ``published_model_keys`` of the default engine's parse)."""
    assert manifest["metadata"]["adapter_type"] == engine  # the parse of that engine's target
    disabled = sorted(uid for uid in manifest["disabled"] if uid.startswith("model."))
    assert disabled == [], f"models the {engine} target disables: {disabled}"
    built = {
        translator().get_asset_spec(manifest, uid, project).key
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model"
    }
    assert waited_for and waited_for <= built, sorted(k.to_user_string() for k in waited_for - built)


@pytest.mark.parametrize("engine", OWN_PARSE)
def test_every_model_publishing_waits_for_is_built_on_each_engine(engine: str) -> None:
    project = dbt_project()
    waited_for = set(published_model_keys(project))
    with environ({"DATAOPS_ENGINE": engine}):
        project = dbt_project()  # the project's manifest, parsed on this engine's target if it was not
        manifest = load_manifest(project.manifest_path)
    assert_every_model_publishing_waits_for_is_built(manifest, engine, project, waited_for)
