"""The event stream's speed measurement runs and reports what it measured (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import events


def test_measure_reports_lines_and_rates() -> None:
    result = events.measure(scale=0.02, days=2)
    assert result["lines"] > 1_000 and result["days"] == 2
    assert result["lines_per_s_cpu"] > 0 and result["lines_per_s_wall"] > 0
    assert result["gzip_bytes"] > 0


def test_the_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert events.main(["--scale", "0.02", "--days", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["days"] == 1
