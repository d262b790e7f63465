"""Each data directory keeps its own warm dbt parse and a bounded history of dbt run artefacts; dbt logs
to its file at info level unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataops.settings import Settings
from dataops.transform import PARTIAL_PARSE, dbt_environment, keep_run_target, run_target, warm_parse


def test_a_run_starts_from_the_last_runs_parse_and_leaves_its_own(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path)
    first = run_target(settings, "run-1")
    assert not (first / PARTIAL_PARSE).exists()  # nothing parsed yet in this data directory
    (first / PARTIAL_PARSE).write_bytes(b"parse of run 1")
    keep_run_target(settings, first)

    second = run_target(settings, "run-2")
    assert (second / PARTIAL_PARSE).read_bytes() == b"parse of run 1"
    (second / PARTIAL_PARSE).write_bytes(b"parse of run 2")
    keep_run_target(settings, second)
    assert warm_parse(settings).read_bytes() == b"parse of run 2"
    assert not [p for p in settings.dbt_runs_dir.iterdir() if p.name.startswith(".")]  # no staged leftovers


def test_a_parse_made_in_another_checkout_of_the_project_is_not_reused(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path / "data")
    here, moved = tmp_path / "checkout" / "transforms", tmp_path / "moved" / "transforms"
    first = run_target(settings, "run-1", here)
    (first / PARTIAL_PARSE).write_bytes(b"parse whose seeds point into the first checkout")
    keep_run_target(settings, first, project_dir=here)

    elsewhere = run_target(settings, "run-2", moved)
    assert not (elsewhere / PARTIAL_PARSE).exists()  # dbt parses afresh instead of reading the old paths
    (elsewhere / PARTIAL_PARSE).write_bytes(b"parse of the moved checkout")
    keep_run_target(settings, elsewhere, project_dir=moved)
    assert (run_target(settings, "run-3", here) / PARTIAL_PARSE).read_bytes().endswith(b"first checkout")


def test_only_the_last_runs_artefacts_are_kept(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path)
    for number in range(6):
        target = run_target(settings, f"run-{number}")
        (target / "run_results.json").write_text("{}")
        os.utime(target, (1_000_000 + number, 1_000_000 + number))  # distinct ages, oldest first
    keep_run_target(settings, target, keep=3)
    kept = sorted(p.name for p in settings.dbt_runs_dir.iterdir() if p.is_dir())
    assert kept == ["run-3", "run-4", "run-5"]
    os.utime(target, (1, 1))  # the current run is never pruned, even when its folder looks oldest
    keep_run_target(settings, target, keep=1)
    assert (target / "run_results.json").exists()


def test_dbt_logs_to_its_file_at_info_level_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(tmp_path)
    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)
    assert dbt_environment(settings)["DBT_LOG_LEVEL_FILE"] == "info"
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # dbt's own variable, for a closer look
    assert dbt_environment(settings)["DBT_LOG_LEVEL_FILE"] == "debug"
