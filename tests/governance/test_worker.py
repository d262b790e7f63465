"""The worker's own walls, with DuckDB's parser and planner, whatever the analysis before them decided; and the
worker process itself: killed at its deadline and its ceiling, replaced, its results cut in rows and bytes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from dataops.governance import worker
from dataops.governance.functions import (
    DENIED,
    REVIEWED_FILE,
    TABLE_FUNCTIONS,
    Refusal,
    allowed_functions,
    check_parse,
    check_plan,
    duckdb_functions,
)
from dataops.governance.worker import Breach, Job, Worker, WorkerPool, open_database, run_job

pytestmark = pytest.mark.xdist_group("worker")

ALIAS = "general_0123456789ab"


@pytest.fixture(scope="module")
def published_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "analytics.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema marts; create table marts.small as select range as n from range(100)")
        conn.execute("create table marts.secret as select 'hidden' as s")
    return path


def job(path: Path, sql: str, **limits: object) -> Job:
    values: dict[str, object] = {
        "memory_limit": "128MB",
        "threads": 1,
        "ceiling_bytes": 2 * 128 * 1024**2 + 512 * 1024**2,
        "max_scan_rows": 1000,
        "max_rows": 10,
        "max_bytes": 10_000,
        **limits,
    }
    return Job(sql, {ALIAS: str(path)}, {f"{ALIAS}.marts.small": 100}, **values)  # type: ignore[arg-type]


@pytest.fixture
def database(published_file: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    db = open_database(job(published_file, "select 1"))
    yield db
    db.close()


def test_the_database_a_query_gets_reads_no_file_and_lifts_no_limit(
    database: duckdb.DuckDBPyConnection, published_file: Path
) -> None:
    """Even a statement that got past every check could not read a file, attach one or change a setting."""
    for statement in (
        f"select * from read_csv('{published_file}')",
        f"attach '{published_file.with_name('other.duckdb')}' as other",
        "set memory_limit = '64GB'",
        "set enable_external_access = true",
        "install httpfs",
    ):
        with pytest.raises(duckdb.Error):
            database.execute(statement).fetchall()
    assert database.execute("select current_setting('temp_directory')").fetchone() == ("",)  # no spilling


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        (f'select * from "{ALIAS}"."marts"."secret"', "not authorised"),
        ("select * from secret", "not authorised"),  # unqualified and not a CTE
        ("with x as (select 1) select * from duckdb_tables", "not authorised"),
        (f'select * from "{ALIAS}"."marts"."small", read_csv(\'/etc/passwd\')', "read_csv() is not allowed"),
        ("select current_setting('threads')", "current_setting() is not allowed"),
        ("select pg_catalog.pg_typeof(1)", "pg_typeof() is not allowed"),
        ("select system.main.getvariable('x')", "getvariable() is not allowed"),
        ("select 1; select 2", "one statement"),
        ("set threads = 4", "does not accept"),
    ],
)
def test_duckdbs_own_parse_is_checked(database: duckdb.DuckDBPyConnection, sql: str, refused: str) -> None:
    with pytest.raises(Refusal, match=re.escape(refused)):
        check_parse(database, sql, {f"{ALIAS}.marts.small"})


def test_a_cte_is_a_cte_in_duckdbs_scope_only(database: duckdb.DuckDBPyConnection) -> None:
    check_parse(database, "with secret as (select 1) select * from secret", set())
    with pytest.raises(Refusal):  # the CTE of a subquery does not cover the outer query's reference
        check_parse(database, "select * from (with secret as (select 1) select * from secret), secret", set())


def test_the_plan_scans_only_authorised_tables(database: duckdb.DuckDBPyConnection) -> None:
    scanned = check_plan(
        database, f'select * from "{ALIAS}"."marts"."small" a, "{ALIAS}"."marts"."small" b', {f"{ALIAS}.marts.small"}
    )
    assert scanned == {f"{ALIAS}.marts.small": 2}
    with pytest.raises(Refusal, match="not authorised"):
        check_plan(database, f'select * from "{ALIAS}"."marts"."secret"', {f"{ALIAS}.marts.small"})
    with pytest.raises(Refusal, match="DUCKDB_TABLES"):
        check_plan(database, "select * from duckdb_tables", set())


def test_the_reviewed_functions_are_duckdbs_and_the_denied_ones_stay_denied() -> None:
    """A DuckDB upgrade that adds functions fails here until they are reviewed (and refused until then)."""
    with duckdb.connect() as conn:
        assert REVIEWED_FILE.read_text().splitlines() == duckdb_functions(conn)
    assert not DENIED & allowed_functions() and {"range", "generate_series", "unnest"} == TABLE_FUNCTIONS
    assert {"sum", "lower", "date_trunc", "row_number", "string_agg", "+"} <= allowed_functions()


def test_result_limits_cut_at_rows_and_bytes(published_file: Path) -> None:
    rows = run_job(job(published_file, f'select n from "{ALIAS}"."marts"."small"'))
    assert len(rows.rows) == 10 and rows.cut_by == "row_limit" and rows.refusal is None
    wide = run_job(job(published_file, "select repeat('x', 3000) from range(5)"))
    assert len(wide.rows) == 3 and wide.cut_by == "result_bytes"
    huge = run_job(job(published_file, "select repeat('x', 20000)"))
    assert huge.refusal is not None and huge.refusal[2] == "result_bytes" and not huge.rows
    scan = run_job(
        job(
            published_file,
            f'select count(*) from "{ALIAS}"."marts"."small" a, "{ALIAS}"."marts"."small" b',
            max_scan_rows=150,
        )
    )
    assert scan.refusal is not None and scan.refusal[2] == "scan_limit" and "200 rows" in scan.refusal[0]


def test_a_worker_is_killed_at_its_deadline_and_replaced(published_file: Path) -> None:
    pool = WorkerPool()
    try:
        with pytest.raises(Breach) as breach:
            pool.run(job(published_file, "select sum(length(repeat('x', 100000000))) from range(1000)"), timeout=0.5)
        assert breach.value.brake == "statement_timeout"
        answer = pool.run(job(published_file, "select 41 + 1"), timeout=60)
        assert answer.rows == [(42,)]
    finally:
        pool.close()


class SlowStart(Worker):
    """A worker whose process starts as on a heavily loaded machine: seconds before Python runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__()

    def command(self, fd: int) -> list[str]:
        return ["/bin/sh", "-c", f'sleep {self.seconds}; exec "$0" "$@"', *super().command(fd)]


def test_the_deadline_counts_the_statement_not_the_workers_start(
    published_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowStart(3)
    try:
        assert slow.run(job(published_file, "select 41 + 1"), timeout=2).rows == [(42,)]
    finally:
        slow.kill()
    monkeypatch.setattr(worker, "START_SECONDS", 0.5)
    never = SlowStart(30)
    with pytest.raises(Breach, match=r"did not start in 0\.5s") as breach:
        never.run(job(published_file, "select 1"), timeout=2)
    assert breach.value.brake == "worker_died" and not never.alive


def test_a_worker_is_stopped_at_its_memory_ceiling(published_file: Path) -> None:
    """DuckDB's own limit does not cover a string built outside its buffer manager: the worker's ceiling does
    (the kernel refuses the allocation, or the gateway kills the worker above it), and the next query runs."""
    pool = WorkerPool()
    sql = "select length(repeat('x', 300000000) || repeat('y', 300000000))"
    try:
        try:
            reply = pool.run(job(published_file, sql, memory_limit="4GB", ceiling_bytes=200 * 1024**2), timeout=120)
            brake = reply.refusal[2] if reply.refusal else None
        except Breach as breach:
            brake = breach.brake
        assert brake == "memory_limit"
        assert pool.run(job(published_file, "select 41 + 1"), timeout=120).rows == [(42,)]
    finally:
        pool.close()
