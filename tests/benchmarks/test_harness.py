"""Smoke run of the benchmark harness at a tiny scale: it works end to end, and the floor (the compiled dbt
SQL in one DuckDB connection) gives exactly the KPIs of the pipeline. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import growth, main

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("bench")]


def test_harness_smoke(tmp_path: Path) -> None:
    output = tmp_path / "results"
    code = main(
        [
            "--scale", "0.01", "--days", "3", "--incremental=", "--no-profile",
            "--work", str(tmp_path / "work"), "--output", str(output), "--tag=-smoke",
        ]
    )  # fmt: skip
    [result_path] = output.glob("*-SF0.01-smoke.json")
    result = json.loads(result_path.read_text())
    build, floor = result["full"]["build"], result["full"]["floor"]
    assert code == 0
    assert result["complete"] and build["success"], build["failures"]
    assert result["full"]["kpis_compared"]["identical"], result["full"]["kpis_compared"]
    assert result["full"]["kpis_compared"]["rows_pipeline"] > 0
    assert floor["models"] > 10 and floor["wall_s"] > 0
    assert set(build["stages"]) >= {"extract", "land", "load", "validate", "dbt", "checks", "publish"}
    assert build["stages"]["dbt"]["seconds"] > 0 and build["peak_rss"] > 0
    assert build["pandera"]["validate"]["rows"] > 0
    assert result["machine"]["cores"] and result["machine"]["packages"]["duckdb"]
    assert "| **full build / floor** |" in result_path.with_suffix(".md").read_text()


def test_growth_exponent() -> None:
    assert growth([(0.1, 1.0), (1, 10.0), (10, 100.0)]) == pytest.approx(1.0)
    assert growth([(1, 5.0)]) is None
