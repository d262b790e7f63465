"""`python -m benchmarks.ab`: two commits' daily runs, alternated in pairs on fresh copies of one state."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import ab
from benchmarks.ab import METRICS, checkout, one_run, order, prepare, render, summarize
from source_systems.simulator.run import simulate
from tests.published import Published, copy_of


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


def test_the_command_runs_the_pairs_in_turn_and_writes_what_each_side_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's own work, with each run's seconds made up: a tree and a parse per commit, the runs in
    alternated order on the state, the result and its table written, and a failed run failing the command."""
    walls = iter([10.0, 9.0, 8.5, 11.0])
    monkeypatch.setattr(ab, "checkout", lambda rev, work: work / "trees" / rev)
    monkeypatch.setattr(ab, "prepare", lambda tree, run_dir, day, parses: parses / tree.name)
    seen: list[tuple[str, str, str]] = []

    def fake_run(tree: Path, state: Path, run_dir: Path, day: dt.date, parse: Path) -> dict[str, Any]:
        seen.append((tree.name, parse.name, str(day)))
        return {**dict.fromkeys((*METRICS, "cpu_s"), next(walls)), "success": tree.name != "broken"}

    monkeypatch.setattr(ab, "one_run", fake_run)
    argv = ["--state", str(tmp_path), "--day", "2026-12-07", "--pairs", "2", "--work", str(tmp_path / "work")]
    assert ab.main([*argv, "--output", str(tmp_path / "out"), "--tag", "t", "main", "mine"]) == 0
    assert seen == [(t, t, "2026-12-07") for t in ("main", "mine", "mine", "main")]
    [result] = (tmp_path / "out").glob("*-t.json")
    assert json.loads(result.read_text())["summary"]["wall_s"]["differences"] == [-1.0, -2.5]
    assert "| wall_s | 10.00–11.00 | 8.50–9.00 | -1.00, -2.50 | -1.75 |" in result.with_suffix(".md").read_text()
    walls = iter([1.0, 1.0])
    assert ab.main([*argv[:5], "1", *argv[6:], "--output", str(tmp_path / "out"), "main", "broken"]) == 1


@pytest.mark.e2e
@pytest.mark.xdist_group("published")
def test_a_commit_runs_the_day_on_a_fresh_copy_from_its_own_parse(published: Published, tmp_path: Path) -> None:
    """One run of a pair (each is the same): the published state, its sources a day on; the commit's tree
    (``git archive``) makes its dbt parse for the day before at the copy's path, then builds the day on a fresh
    copy from it, measured from the build run's events and dbt's log."""
    state = copy_of(published, tmp_path / "state")
    simulate(state.settings.sources_dir, published.late_day)
    tree = checkout("HEAD", tmp_path / "work")
    assert (tree / "benchmarks" / "ab.py").exists() and not (tree / ".git").exists()  # the commit's files alone
    before = sorted(p.name for p in (state.root / "dbt_runs").iterdir())
    run_dir = tmp_path / "work" / "run"
    parse = prepare(tree, run_dir, published.late_day - dt.timedelta(days=1), tmp_path / "work" / "parses")
    [saved] = parse.iterdir()
    assert saved.name.startswith("partial_parse-")
    run = one_run(tree, state.root, run_dir, published.late_day, parse)
    assert run["success"] and run["cpu_s"] > 0 and set(METRICS) <= run.keys()
    assert 0 < run["dbt_first_node_s"] < run["dbt_step_s"] < run["build_run_s"] < run["wall_s"]
    assert run["before_dbt_s"] > 0 and run["after_dbt_s"] > 0 and run["dbt_span_s"] > 0
    assert {"lake__extracts", "enterprise_model", "publish__analytics_warehouse"} <= run["steps"].keys()
    assert sorted(p.name for p in (state.root / "dbt_runs").iterdir()) == before  # the state is only copied
