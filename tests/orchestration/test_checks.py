"""The blocking checks fail closed: a breaker or gate check that cannot be evaluated fails with its error
(the run stops before publishing) instead of raising, and one broken gate check hides none of the others."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from dataops.core.warehouse import Limits
from orchestration.defs.gate.cleansing_gate import gate_results
from orchestration.lib.brakes import VOLUME_CHECK, breaker_result
from quality.contracts import contract_for
from quality.gate import GATE
from registry.loader import load_registry

DAY = dt.date(2025, 3, 3)


def test_a_breaker_that_cannot_be_evaluated_fails_its_check_with_the_error(tmp_path: Path) -> None:
    result = breaker_result(tmp_path / "missing.duckdb", Limits(), contract_for("crm", "leads"), DAY, DAY, set())

    assert result.check_name == VOLUME_CHECK and not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert "volume circuit breaker on crm.leads could not be evaluated" in (result.description or "")
    assert "missing.duckdb" in (result.description or "")  # the cause, named


def test_every_gate_check_reports_even_when_the_marts_cannot_be_read() -> None:
    with duckdb.connect() as conn:  # an empty warehouse: every check's query fails
        results = list(gate_results(list(GATE), conn, DAY, DAY, load_registry()))

    assert [(r.asset_key, r.check_name) for r in results] == [(dg.AssetKey(list(c.asset)), c.name) for c in GATE]
    assert not any(r.passed for r in results)
    assert all("could not run" in (r.description or "") for r in results)
