"""A real PostgreSQL server for the tests of the Dagster instance on PostgreSQL, stopped after the module
(benchmarks/postgres.py: the harness's ``--dagster-storage postgres`` starts the same kind)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.postgres import temporary_server


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """postgresql://dagster@127.0.0.1:PORT/dagster on a throwaway server (fsync off: nothing here must last)."""
    with temporary_server(durable=False) as server:
        yield server.new_database("dagster")
