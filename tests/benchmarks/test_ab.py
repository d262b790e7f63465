"""`python -m benchmarks.ab`: two commits' daily runs, alternated in pairs on fresh copies of one state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.ab import METRICS, main, order, render, summarize
from source_systems.simulator.run import simulate
from tests.published import Published, copy_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_pairs_alternate_which_commit_runs_first() -> None:
    assert order(3, "a", "b") == ["a", "b", "b", "a", "a", "b"]


def test_each_pairs_difference_is_the_measured_commit_less_the_other() -> None:
    runs = [
        {"tree": "a", **dict.fromkeys((*METRICS, "cpu_s"), 10.0)},
        {"tree": "b", **dict.fromkeys((*METRICS, "cpu_s"), 9.0)},
        {"tree": "b", **dict.fromkeys((*METRICS, "cpu_s"), 12.0)},
        {"tree": "a", **dict.fromkeys((*METRICS, "cpu_s"), 11.5)},
    ]
    summary = summarize(runs, "a", "b")
    assert summary["dbt_step_s"] == {
        "ranges": {"a": [10.0, 11.5], "b": [9.0, 12.0]},
        "differences": [-1.0, 0.5],
        "median_difference": -0.25,
    }
    assert "| dbt_step_s | 10.00–11.50 | 9.00–12.00 | -1.00, +0.50 | -0.25 |" in render(summary, "a", "b", 2)


@pytest.mark.e2e
@pytest.mark.xdist_group("published")
def test_a_pair_runs_each_commit_on_its_own_copy_from_its_own_parse(published: Published, tmp_path: Path) -> None:
    """One pair on the published state, its sources a day on: each commit's tree (both HEAD here) builds the
    day on a fresh copy, from its parse made for the day before, and is measured from its events and dbt's log."""
    state = copy_of(published, tmp_path / "state")
    simulate(state.settings.sources_dir, published.late_day)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    output = tmp_path / "results"
    argv = ["--state", str(state.root), "--day", str(published.late_day), "--pairs", "1"]
    argv += ["--work", str(tmp_path / "work"), "--output", str(output), "--tag", "ab-test", "HEAD", head.stdout.strip()]
    assert main(argv) == 0
    [result] = output.glob("*-ab-test.json")
    record = json.loads(result.read_text())
    assert [run["tree"] for run in record["runs"]] == ["HEAD", head.stdout.strip()]
    for run in record["runs"]:
        assert run["success"] and run["dbt_step_s"] > 0 and run["cpu_s"] > 0
        assert 0 < run["dbt_first_node_s"] < run["dbt_step_s"] and run["before_dbt_s"] > 0
    assert (output / result.name.replace(".json", ".md")).read_text().count("\n| ") >= len(METRICS)
