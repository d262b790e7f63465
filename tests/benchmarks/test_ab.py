"""`python -m benchmarks.ab`: two commits' daily runs, alternated in pairs on fresh copies of one state."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import ab
from benchmarks.ab import METRICS, checkout, order, render, summarize


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


def test_a_commit_is_checked_out_alone_and_once(tmp_path: Path) -> None:
    """The commit's tree (``git archive``): its files alone, made once per commit. The measurement of a real build
    run is the harness's smoke test's (tests/benchmarks/test_harness.py), the command's sequence the test above's: a
    real pair's daily runs cost a minute and a half of the suite's CPU for what `python -m benchmarks.ab` shows at
    once when it fails (docs/testing.md, "Stop 52")."""
    tree = checkout("HEAD", tmp_path / "work")
    assert (tree / "benchmarks" / "ab.py").exists() and not (tree / ".git").exists()
    assert checkout("HEAD", tmp_path / "work") == tree
