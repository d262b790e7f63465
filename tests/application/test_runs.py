"""The platform's Dagster instance: created once, with its config and its storage."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from application.runs import dagster_home
from dataops.core.settings import Settings


def test_a_new_instance_has_its_storage_before_any_service_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webserver, daemon and code server all create a missing storage on start; started together they
    raced on its schema (two alembic heads) and the code location never loaded."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings(tmp_path))
    assert (home / "dagster.yaml").exists()
    for db in (home / "history" / "runs.db", home / "schedules" / "schedules.db"):
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("select count(*) from alembic_version").fetchone() == (1,)
