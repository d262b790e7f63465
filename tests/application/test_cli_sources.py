"""The command line for the simulated systems: help everywhere, simulate, continue, refuse a mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from application.cli import app

runner = CliRunner()


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAOPS_DATA_DIR", str(tmp_path))
    return tmp_path


def _walk(group: object, prefix: list[str]) -> list[list[str]]:
    import typer.main

    command = typer.main.get_command(app) if not prefix else group
    out = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        out += _walk(sub, [*prefix, name])
    return out


def test_every_command_has_help() -> None:
    for path in _walk(app, []):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_simulate_then_continue(data_dir: Path) -> None:
    first = runner.invoke(app, ["simulate", "--start", "2025-01-01", "--through", "2025-01-10", "--scale", "0.02"])
    assert first.exit_code == 0, first.output
    assert "What each system holds" in first.output and "leads" in first.output
    assert (data_dir / "sources" / "truth" / "kpi_daily.parquet").exists()
    again = runner.invoke(app, ["simulate", "--through", "2025-01-12"])
    assert again.exit_code == 0, again.output
    assert "Simulated 2 day(s)" in again.output
    done = runner.invoke(app, ["simulate", "--through", "2025-01-12"])
    assert "nothing to do" in done.output


def test_simulate_refuses_different_settings_on_existing_sources(data_dir: Path) -> None:
    runner.invoke(app, ["simulate", "--start", "2025-01-01", "--through", "2025-01-03", "--scale", "0.02"])
    result = runner.invoke(app, ["simulate", "--through", "2025-01-05", "--seed", "9", "--scale", "0.02"])
    assert result.exit_code == 1
    assert "already holds a simulation" in result.output and "--reset" in result.output


def test_simulate_rejects_a_malformed_date(data_dir: Path) -> None:
    result = runner.invoke(app, ["simulate", "--through", "31/12/2025"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output
