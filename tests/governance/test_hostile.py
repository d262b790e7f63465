"""A hostile analyst, at both doors: every attack is refused, braked or neutralised, says why, reads nothing it
should not, and leaves exactly one audit line that names what ran.

Each attack runs through the CLI door (`dataops sql`, in process) and the HTTP door (a real `dataops api serve`)
against a published warehouse, under a policy whose analyst brakes are tight (one second, 128 MB, 10 rows,
64 KB, 5,000 rows scanned) so that exhausting them is quick. Attacks on the HTTP framing, on identity and on
configuration follow the table.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from dataops.governance import audit
from tests.governance.conftest import BRAKE_SECONDS, DATAOPS, Governed, ask, cli, json_rows, policy_with, serve

pytestmark = pytest.mark.xdist_group("built")

NO_GL = "marts.fct_gl_entries"


def only_ones(rows: list[dict[str, Any]]) -> bool:
    return [list(r.values()) for r in rows] == [[1]]


def pseudonyms(column: str) -> Callable[[list[dict[str, Any]]], bool]:
    def check(rows: list[dict[str, Any]]) -> bool:
        return bool(rows) and all(str(r[column]).startswith("psd_") and "@" not in str(r[column]) for r in rows)

    return check


@dataclass(frozen=True)
class Attack:
    sql: str
    expect: str  # in the refusal's message (or, for an attack that runs, nothing)
    outcome: str = "denied"  # the audit's outcome
    brake: str | None = None
    role: str = "analyst"
    rows: Callable[[list[dict[str, Any]]], bool] | None = None  # for an attack that runs: what came back
    datasets: tuple[str, ...] = ()  # the audit's datasets: what actually ran


RESTRICTED = "is restricted: granted to finance, executive, data_engineer"
NOT_PUBLISHED = "is published"
NOT_ALLOWED = "is not allowed"
ATTACKS: dict[str, Attack] = {
    # --- the issue's own attacks ---
    "cte named like the ledger, beside a real table": Attack(
        "with fct_gl_entries as (select 1) select g.* from fct_gl_entries g, "
        "(select 1 from marts.fct_leads limit 1) l limit 3",
        "",
        outcome="ok",
        role="sales_ops",
        rows=only_ones,
        datasets=("marts.fct_leads",),
    ),
    "cte named like the people table": Attack(
        "with dim_people as (select 1) select count(*), count(distinct email) from dim_people",
        'column "email" not found',
        outcome="invalid",
    ),
    "a misspelt column is a bind error, audited": Attack(
        "select emial from marts.fct_leads", 'column "emial" not found', outcome="invalid"
    ),
    "information_schema": Attack("select * from information_schema.tables", NOT_PUBLISHED),
    "a parameter": Attack("select ?", "parameters cannot be bound", outcome="invalid"),
    "a probe of the ledger's columns": Attack("select journal_idd from marts.fct_gl_entries", RESTRICTED),
    "deeply nested sql": Attack(
        "select " + "(" * 5000 + "1" + ")" * 5000, "nests brackets", outcome="braked", brake="statement_nesting"
    ),
    "fifty million unnested, scaled to outrun any machine": Attack(
        "select count(*) from (select unnest(generate_series(1, 500000000)))",
        "memory limit",
        outcome="braked",
        brake="memory_limit",
    ),
    # a terabyte of strings made in small pieces: no piece reaches the memory limit, time stops it (strings of
    # 100 MB each made the memory limit or the timeout stop it first, as the machine's load had it)
    "gigabytes of repeated strings": Attack(
        "select sum(length(repeat('x', 10000 + range % 2))) from range(100000000)",
        f"statement timeout: stopped after {BRAKE_SECONDS}s",
        outcome="braked",
        brake="statement_timeout",
    ),
    "one huge row from string_agg over a cross join": Attack(
        "select string_agg(repeat(a.kpi_name, 50), ',') from kpis.kpi_monthly a, kpis.kpi_monthly b",
        "the first row alone is",
        outcome="braked",
        brake="result_bytes",
    ),
    "a filter that hides a full scan from the estimate": Attack(
        "select * from marts.fct_customer_states_daily where customer_id = 'x' or length(customer_id) > 0",
        "scan limit",
        outcome="braked",
        brake="scan_limit",
    ),
    # --- table functions and files ---
    "read_parquet on the lake": Attack("select * from read_parquet('{root}/lake/**/*.parquet')", NOT_ALLOWED),
    "read_csv on the exports": Attack(
        "select * from read_csv('{root}/sources/accounting/exports/*/payments.csv')", NOT_ALLOWED
    ),
    "read_json": Attack("select * from read_json('{root}/governance/*.json')", NOT_ALLOWED),
    "read_text": Attack("select * from read_text('/etc/passwd')", NOT_ALLOWED),
    "read_blob of the restricted file": Attack(
        "select * from read_blob('{root}/warehouse/restricted.duckdb')", NOT_ALLOWED
    ),
    "glob": Attack("select * from glob('{root}/**')", NOT_ALLOWED),
    "parquet_metadata": Attack("select * from parquet_metadata('{root}/lake/**/*.parquet')", NOT_ALLOWED),
    "sniff_csv": Attack("select * from sniff_csv('/etc/passwd')", NOT_ALLOWED),
    "a file path as a table": Attack("select * from '/etc/passwd'", NOT_PUBLISHED),
    "the restricted file as a table": Attack("select * from '{root}/warehouse/restricted.duckdb'", NOT_PUBLISHED),
    "a lake file as a table": Attack("select * from '{root}/lake/raw/crm/leads/x.parquet'", NOT_PUBLISHED),
    "duckdb_tables()": Attack("select * from duckdb_tables()", NOT_ALLOWED),
    "duckdb_columns() of the ledger": Attack("select * from duckdb_columns() where table_name = 'x'", NOT_ALLOWED),
    "duckdb_settings()": Attack("select * from duckdb_settings()", NOT_ALLOWED),
    "duckdb_databases()": Attack("select * from duckdb_databases()", NOT_ALLOWED),
    "pragma_table_info": Attack("select * from pragma_table_info('marts.fct_gl_entries')", NOT_ALLOWED),
    "a system view without parentheses": Attack("select * from duckdb_tables", NOT_PUBLISHED),
    "sqlite_master": Attack("select * from sqlite_master", NOT_PUBLISHED),
    "pg_catalog": Attack("select * from pg_catalog.pg_class", NOT_PUBLISHED),
    "the system catalog": Attack("select * from system.main.duckdb_tables", "name datasets as schema.table"),
    "repeat_row": Attack("select * from repeat_row(1, num_rows = 1000000000)", NOT_ALLOWED),
    "test_all_types": Attack("select * from test_all_types()", NOT_ALLOWED),
    # --- strings that become SQL ---
    "query()": Attack("select * from query('select * from marts.fct_gl_entries')", NOT_ALLOWED),
    "query() built from pieces": Attack("select * from query('select * from marts.fct_' || 'gl_entries')", NOT_ALLOWED),
    "query_table() built from pieces": Attack("select * from query_table('marts.fct_gl' || '_entries')", NOT_ALLOWED),
    "json_execute_serialized_sql": Attack(
        "select * from json_execute_serialized_sql(json_serialize_sql('select * from marts.fct_gl_entries'))",
        NOT_ALLOWED,
    ),
    "json_serialize_plan": Attack("select json_serialize_plan('select * from marts.fct_gl_entries')", NOT_ALLOWED),
    "getvariable of the pseudonym pads": Attack("select getvariable('dataops_pseudonym_inner')", NOT_ALLOWED),
    "current_setting": Attack("select current_setting('home_directory')", NOT_ALLOWED),
    "getenv": Attack("select getenv('HOME')", "not allowed"),
    "current_query": Attack("select current_query()", NOT_ALLOWED),
    "a function by schema": Attack("select pg_catalog.current_setting('threads')", NOT_ALLOWED),
    # --- shadowing: CTEs, aliases, views, macros, quoting, homoglyphs ---
    "a cte defined after its use": Attack(
        "with a as (select * from fct_gl_entries), fct_gl_entries as (select 1) select * from a", RESTRICTED
    ),
    "a cte out of scope": Attack(
        "select * from (with fct_gl_entries as (select 1 as x) select * from fct_gl_entries) t, fct_gl_entries",
        RESTRICTED,
    ),
    "a cte in a subquery does not hide the outer table": Attack(
        "select (select count(*) from (with fct_gl_entries as (select 1) select * from fct_gl_entries)) as n, "
        "count(*) from marts.fct_gl_entries",
        RESTRICTED,
    ),
    "an alias named like the ledger": Attack(
        "select fct_gl_entries.product_id from marts.dim_products fct_gl_entries limit 1",
        "",
        outcome="ok",
        rows=lambda rows: len(rows) == 1 and set(rows[0]) == {"product_id"},
        datasets=("marts.dim_products",),
    ),
    "a table aliased as a cte's name": Attack(
        "with x as (select 1) select email from marts.dim_people as x limit 3",
        "",
        outcome="ok",
        rows=pseudonyms("email"),
        datasets=("marts.dim_people",),
    ),
    "a view made on the way": Attack(
        "create temp view fct_leads as select * from marts.fct_gl_entries", "only SELECT queries are allowed"
    ),
    "a view, then a query": Attack(
        "create temp view v as select * from marts.fct_gl_entries; select * from v",
        "one statement per query",
        outcome="invalid",
    ),
    "a macro": Attack(
        "create macro m() as table select * from marts.fct_gl_entries", "only SELECT queries are allowed"
    ),
    "quoted names": Attack('select * from "marts"."fct_gl_entries"', RESTRICTED),
    "upper case": Attack("select * from MARTS.FCT_GL_ENTRIES", RESTRICTED),
    "quoted mixed case": Attack('select * from "MARTS"."Fct_Gl_Entries"', RESTRICTED),
    "a cyrillic i": Attack("select * from marts.fct_gl_entr\u0456es", NOT_PUBLISHED),
    "a zero-width space": Attack('select * from marts."fct_gl\u200b_entries"', NOT_PUBLISHED),
    "a full-width name": Attack("select * from marts.\uff46ct_gl_entries", NOT_PUBLISHED),
    "the restricted catalog": Attack("select * from restricted.marts.fct_gl_entries", "name datasets as schema.table"),
    "the analyst catalog": Attack("select * from analytics.marts.fct_leads", "name datasets as schema.table"),
    "an unqualified restricted name": Attack("select * from fct_gl_entries", RESTRICTED),
    # --- other forms: FROM first, PIVOT, TABLE, subqueries, set operations ---
    "from first": Attack("from marts.fct_gl_entries select *", RESTRICTED),
    "from alone": Attack("from marts.fct_gl_entries", RESTRICTED),
    "a pivot statement": Attack(
        "pivot marts.fct_gl_entries on account_code using sum(debit_amount)", "only SELECT queries are allowed"
    ),
    "pivot in a query": Attack(
        "select * from marts.fct_gl_entries pivot (sum(debit_amount) for account_code in ('4000'))", RESTRICTED
    ),
    "unpivot in a query": Attack(
        "select * from marts.fct_gl_entries unpivot (v for k in (debit_amount, credit_amount))", RESTRICTED
    ),
    "table statement": Attack("table marts.fct_gl_entries", RESTRICTED),
    "describe": Attack("describe marts.fct_gl_entries", "only SELECT queries are allowed"),
    "summarize": Attack("summarize marts.fct_gl_entries", "only SELECT queries are allowed"),
    "show tables": Attack("show all tables", "only SELECT queries are allowed"),
    "a lateral subquery": Attack(
        "select * from marts.dim_products p, lateral (select * from marts.fct_gl_entries limit 1)", RESTRICTED
    ),
    "a scalar subquery": Attack("select (select count(*) from marts.fct_gl_entries)", RESTRICTED),
    "exists": Attack("select 1 where exists (select 1 from marts.fct_gl_entries)", RESTRICTED),
    "a union": Attack("select 1 union all select count(*) from marts.fct_gl_entries", RESTRICTED),
    "a recursive cte over the ledger": Attack(
        "with recursive r(n) as (select count(*) from marts.fct_gl_entries union all select n from r where false) "
        "select * from r",
        RESTRICTED,
    ),
    "a subquery as a table function's argument": Attack(
        "select * from range((select count(*) from marts.fct_gl_entries))", RESTRICTED
    ),
    "a positional join": Attack("select * from marts.dim_products positional join marts.fct_gl_entries", RESTRICTED),
    "emails in clear": Attack(
        "select email from marts.fct_leads limit 5",
        "",
        outcome="ok",
        rows=pseudonyms("email"),
        datasets=("marts.fct_leads",),
    ),
    "lead ids, which link back to the lake": Attack(
        "select lead_id from marts.fct_leads limit 5",
        "",
        outcome="ok",
        rows=pseudonyms("lead_id"),
        datasets=("marts.fct_leads",),
    ),
    # --- statements that are not one query ---
    "attach": Attack("attach '{root}/warehouse/restricted.duckdb' as r", "only SELECT queries are allowed"),
    "detach": Attack("detach analytics", "only SELECT queries are allowed"),
    "copy to": Attack("copy (select * from marts.fct_leads) to '/tmp/leads.csv'", "only SELECT queries are allowed"),
    "export database": Attack("export database '/tmp/everything'", "does not parse", outcome="invalid"),
    "install": Attack("install httpfs", "only SELECT queries are allowed"),
    "load": Attack("load httpfs", "only SELECT queries are allowed"),
    "set": Attack("set memory_limit = '100GB'", "only SELECT queries are allowed"),
    "set variable": Attack("set variable x = 1", "only SELECT queries are allowed"),
    "pragma": Attack("pragma threads = 64", "only SELECT queries are allowed"),
    "call": Attack("call pragma_version()", "only SELECT queries are allowed"),
    "use": Attack("use restricted", "only SELECT queries are allowed"),
    "create table as": Attack("create table t as select * from marts.fct_leads", "only SELECT queries are allowed"),
    "insert": Attack("insert into marts.fct_leads select * from marts.fct_leads", "only SELECT queries are allowed"),
    "select into": Attack("select * into t from marts.fct_leads", "cannot be part of a query"),
    "a second statement": Attack("select 1; select * from marts.fct_gl_entries", "one statement", outcome="invalid"),
    "a thousand statements": Attack("select 1;" * 1000, "one statement", outcome="invalid"),
    "a NUL character": Attack("select 1\x00; attach 'x'", "NUL", outcome="invalid"),
    "not sql": Attack("selec everything frm nowhere", "does not parse", outcome="invalid"),
    "a comment that hides nothing": Attack("select 1 as one -- ; attach 'x' as y", "", outcome="ok", rows=only_ones),
    # --- resource exhaustion ---
    "a runaway cross join": Attack(
        "select count(*) from range(100000) a, range(100000) b where a.range * b.range % 7 = 3",
        "statement timeout",
        outcome="braked",
        brake="statement_timeout",
    ),
    "an endless recursive cte": Attack(
        "with recursive r(n) as (select 1 union all select n + 1 from r) select count(*) from r",
        "statement timeout",
        outcome="braked",
        brake="statement_timeout",
    ),
    "a list of a hundred million": Attack(
        "select list(range) from range(100000000)", "memory limit", outcome="braked", brake="memory_limit"
    ),
    "a two-gigabyte string": Attack(
        "select length(repeat('x', 2000000000))", "memory limit", outcome="braked", brake="memory_limit"
    ),
    "ten billion rows counted": Attack(
        "select count(distinct range % 1000) from range(10000000000)",
        "statement timeout",
        outcome="braked",
        brake="statement_timeout",
    ),
    "a scan of many copies of a table": Attack(
        "select count(*) from marts.fct_leads a, marts.fct_leads b", "scan limit", outcome="braked", brake="scan_limit"
    ),
    "sleep_ms": Attack("select sleep_ms(60000)", "not allowed"),
    "an expression of ten thousand terms, costly to analyse": Attack(
        "select 1" + "+1" * 10_000, "tokens, above the", outcome="braked", brake="statement_size"
    ),
    "a first row of a megabyte": Attack(
        "select repeat('x', 1000000)", "the first row alone is", outcome="braked", brake="result_bytes"
    ),
    "rows past the row limit are cut": Attack(
        "select * from range(1000000)",
        "",
        outcome="ok",
        brake="row_limit",
        rows=lambda rows: len(rows) == 10,
    ),
    "bytes past the byte limit are cut": Attack(
        "select repeat('x', 20000) from range(10)",
        "",
        outcome="ok",
        brake="result_bytes",
        rows=lambda rows: 0 < len(rows) < 10,
    ),
}


@pytest.fixture(scope="module")
def hostile(governed: Governed, tmp_path_factory: pytest.TempPathFactory) -> Governed:
    limits = {
        "max_scan_rows": 5_000,
        "statement_timeout_seconds": BRAKE_SECONDS,
        "max_result_rows": 10,
        "max_result_bytes": "64KB",
        "memory_limit": "128MB",
        "max_concurrent_queries": 2,
    }
    server = {"queue_seconds": 0.5, "failed_tokens": {"free_attempts": 1000}}
    return policy_with(governed, tmp_path_factory.mktemp("hostile"), limits, server)


@pytest.fixture(scope="module")
def api(hostile: Governed) -> Iterator[str]:
    with serve(hostile) as url:
        yield url


@pytest.fixture(scope="module")
def ledger_only_columns(governed: Governed) -> set[str]:
    """Column names only the restricted ledger has: no message to an analyst may name one it did not type."""
    with duckdb.connect(str(governed.settings.restricted_db), read_only=True) as conn:
        ledger = {
            c
            for (c,) in conn.execute(
                "select column_name from duckdb_columns() where table_name = 'fct_gl_entries'"
            ).fetchall()
        }
    with duckdb.connect(str(governed.settings.analytics_db), read_only=True) as conn:
        others = {c for (c,) in conn.execute("select column_name from duckdb_columns()").fetchall()}
    return ledger - others


def statement_of(attack: Attack, governed: Governed) -> str:
    return attack.sql.replace("{root}", str(governed.settings.data_dir))


def check_record(record: dict[str, Any], attack: Attack, sql: str, door: str) -> None:
    assert record["door"] == door and record["user"] == f"{attack.role}_user" and record["role"] == attack.role
    assert record["outcome"] == attack.outcome, record
    assert record["brake"] == attack.brake, record
    assert record["statement_chars"] == len(sql) and len(record["statement"] or "") <= audit.MAX_STATEMENT_CHARS + 40
    assert record["statement"].startswith(sql[: audit.MAX_STATEMENT_CHARS])
    assert NO_GL not in record["datasets"] or attack.role != "analyst"
    if attack.outcome == "ok":
        assert record["allowed"] is True and tuple(record["datasets"]) == attack.datasets
    else:
        assert record["allowed"] is False and record["rows"] == 0 and attack.expect.lower() in record["reason"].lower()


def check_message(message: str, attack: Attack, sql: str, hidden: set[str]) -> None:
    assert attack.expect.lower() in message.lower(), message
    assert not {c for c in hidden if c in message and c not in sql}, message


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_an_attack_through_the_cli_door(hostile: Governed, ledger_only_columns: set[str], case: str) -> None:
    attack = ATTACKS[case]
    sql = statement_of(attack, hostile)
    before = hostile.audit_lines()
    code, output = cli(hostile, "sql", sql, "--format", "json", token=hostile.tokens[attack.role])
    (record,) = hostile.new_records(before)
    check_record(record, attack, sql, "cli")
    if attack.outcome == "ok":
        assert code == 0, output
        rows = json_rows(output)
        assert attack.rows is not None and attack.rows(rows), rows
    else:
        assert code == 4, output
        check_message(" ".join(output.split()), attack, sql, ledger_only_columns)
        assert "Traceback" not in output


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_an_attack_over_http(hostile: Governed, api: str, ledger_only_columns: set[str], case: str) -> None:
    attack = ATTACKS[case]
    sql = statement_of(attack, hostile)
    before = hostile.audit_lines()
    response = ask(api, hostile.tokens[attack.role], sql)
    (record,) = hostile.new_records(before)
    check_record(record, attack, sql, "http")
    assert record["http_status"] == response.status_code
    if attack.outcome == "ok":
        assert response.status_code == 200, response.text
        assert attack.rows is not None and attack.rows(response.json()["rows"])
        assert response.json()["cut_by"] == attack.brake
    else:
        assert response.status_code == (400 if attack.outcome == "invalid" else 403), response.text
        body = response.json()
        assert body["outcome"] == attack.outcome and body["brake"] == attack.brake
        check_message(body["message"], attack, sql, ledger_only_columns)


# --- brakes under load ---


def test_three_runaway_queries_at_once_are_all_stopped_and_the_third_waits_for_no_slot(
    hostile: Governed, api: str
) -> None:
    """The issue saw three of these run 240 s each while the audit said 30 s. The analyst may run two at once:
    both are killed at the deadline; the third waits its queue time for a slot and is refused."""
    sql = "select sum(length(repeat('x', 100000000))) from range(100) -- {}"
    before = hostile.audit_lines()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda i: ask(api, hostile.tokens["analyst"], sql.format(i)), range(3)))
    brakes = sorted(r.json()["brake"] for r in responses)
    assert brakes == ["concurrency_user", "statement_timeout", "statement_timeout"], [r.text for r in responses]
    assert sorted(r.status_code for r in responses) == [403, 403, 429]
    records = hostile.new_records(before)
    assert sorted(r["brake"] for r in records) == brakes and all(r["allowed"] is False for r in records)
    health = ask(api, hostile.tokens["analyst"], "select 1 as one")  # and the gateway still answers
    assert health.status_code == 200 and health.json()["rows"] == [{"one": 1}]


# --- the HTTP framing ---


def raw_request(url: str, head: str, body: bytes = b"", chunks: Iterator[bytes] | None = None) -> bytes:
    """Bytes on the wire, and what came back (the server may close while we still send: that is fine)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        try:
            for chunk in chunks or iter(()):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if chunks is not None:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def test_a_20_mb_chunked_body_without_a_token_is_refused_as_it_is_read(hostile: Governed, api: str) -> None:
    before, size = hostile.audit_lines(), audit.audit_path(hostile.settings).stat().st_size
    head = "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    answer = raw_request(api, head, chunks=(b'{"sql": "' + b"x" * 65536 for _ in range(320)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    (record,) = hostile.new_records(before)
    assert record["outcome"] == "too_large" and record["brake"] == "request_size" and record["http_status"] == 413
    assert record["user"] is None and record["request_bytes"] == hostile.policy.server.max_request_bytes
    assert audit.audit_path(hostile.settings).stat().st_size - size < 5_000  # not 20 MB


def test_a_declared_length_above_the_limit_is_refused_unread(hostile: Governed, api: str) -> None:
    before = hostile.audit_lines()
    head = "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n"
    answer = raw_request(api, head, b'{"sql": "select 1"}')
    assert answer.startswith(b"HTTP/1.1 413")
    (record,) = hostile.new_records(before)
    assert record["brake"] == "request_size" and record["request_bytes"] == 0


@pytest.mark.parametrize(
    ("case", "content", "headers", "status"),
    [
        ("not json", b"select 1", {"content-type": "application/json"}, 422),
        ("a json array", b'["select 1"]', {"content-type": "application/json"}, 422),
        ("sql as a number", b'{"sql": 1}', {"content-type": "application/json"}, 422),
        ("no sql", b'{"format": "json"}', {"content-type": "application/json"}, 422),
        ("a form", b"sql=select+1", {"content-type": "application/x-www-form-urlencoded"}, 422),
        ("a format that is a path", b'{"sql": "select 1", "format": "../../etc/passwd"}', {}, 422),
    ],
)
def test_a_malformed_request_is_refused_and_audited(
    hostile: Governed, api: str, case: str, content: bytes, headers: dict[str, str], status: int
) -> None:
    before = hostile.audit_lines()
    auth = {"authorization": f"Bearer {hostile.tokens['analyst']}", "content-type": "application/json"}
    response = httpx.post(f"{api}/v1/query", content=content, headers={**auth, **headers}, timeout=60)
    assert response.status_code == status, response.text
    (record,) = hostile.new_records(before)
    assert record["http_status"] == status and record["allowed"] is False and record["outcome"] == "invalid"
    assert record["statement"] == content.decode() or record["statement"] == "select 1"


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v1/query", 405), ("GET", "/v1/secrets", 404)])
def test_other_paths_and_methods_are_audited(hostile: Governed, api: str, method: str, path: str, status: int) -> None:
    before = hostile.audit_lines()
    assert httpx.request(method, f"{api}{path}", timeout=60).status_code == status
    (record,) = hostile.new_records(before)
    assert record["http_status"] == status and record["path"] == path and record["outcome"] == "invalid"


@pytest.mark.parametrize(
    "authorization",
    [
        "{token}",
        "Basic {token}",
        "Token {token}",
        "Bearer",
        "Bearer {token} {token}",
        "Bearer {token}x",
        "Bearer ../{token}",
    ],
)
def test_only_a_bearer_token_authenticates(hostile: Governed, api: str, authorization: str) -> None:
    before = hostile.audit_lines()
    header = authorization.format(token=hostile.tokens["analyst"])
    response = ask(api, None, "select 1 as one", authorization=header)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    (record,) = hostile.new_records(before)
    assert record["outcome"] == "unauthenticated" and record["user"] is None and record["http_status"] == 401
    assert hostile.tokens["analyst"] not in json.dumps(record)
    lower = ask(api, None, "select 1 as one", authorization=f"bearer {hostile.tokens['analyst']}")
    assert lower.status_code == 200  # the scheme's case does not matter (RFC 9110)


# --- identity and configuration from the environment ---


def test_logname_and_user_do_not_make_the_cli_someone_else(hostile: Governed) -> None:
    """A user mapped to an OS account other than the caller's: naming it in LOGNAME and USER changes nothing."""
    from dataops.governance.users import add_user

    add_user(hostile.settings, hostile.policy, "the_cfo", "finance", os_user="cfo")
    before = hostile.audit_lines()
    code, output = cli(hostile, "sql", "select count(*) as n from marts.fct_gl_entries", LOGNAME="cfo", USER="cfo")
    assert code == 3 and "is not mapped to a dataops user" in " ".join(output.split())
    (record,) = hostile.new_records(before)
    assert record["outcome"] == "unauthenticated" and record["user"] is None and record["source"] != "cli:cfo"


def test_a_token_on_the_command_line_is_refused(hostile: Governed) -> None:
    before = hostile.audit_lines()
    code, output = cli(hostile, "sql", "select 1", "--token", hostile.tokens["analyst"])
    assert code == 3 and "process list" in " ".join(output.split())
    (record,) = hostile.new_records(before)
    assert record["outcome"] == "unauthenticated" and hostile.tokens["analyst"] not in json.dumps(record)


def test_a_token_file_readable_by_others_is_refused(hostile: Governed, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(hostile.tokens["analyst"] + "\n")
    token_file.chmod(0o644)
    code, output = cli(hostile, "sql", "select 1 as one", "--token-file", str(token_file), "--format", "json")
    assert code == 3 and "chmod 600" in " ".join(output.split())
    token_file.chmod(0o600)
    code, output = cli(hostile, "sql", "select 1 as one", "--token-file", str(token_file), "--format", "json")
    assert code == 0 and json_rows(output) == [{"one": 1}]


@pytest.fixture
def platform_data_dir(hostile: Governed, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data directory the platform uses when no variable chooses one: the hostile warehouse's, here."""
    import application.cli.governance
    import dataops.core.settings

    monkeypatch.setattr(dataops.core.settings, "DEFAULT_DATA_DIR", hostile.settings.data_dir)
    monkeypatch.setattr(application.cli.governance, "DEFAULT_DATA_DIR", hostile.settings.data_dir)
    return hostile.settings.data_dir


@pytest.mark.parametrize("variable", ["DATAOPS_POLICY", "DATAOPS_USERS", "DATAOPS_DATA_DIR"])
def test_settings_from_another_account_are_refused(
    hostile: Governed, platform_data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """Someone else's policy, users or data directory would grant them any role: only the platform's own
    account may choose those files; anyone else is refused, and audited in the platform's own log."""
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setattr(os, "getuid", lambda: 4242)  # any account but the installation's owner
    before = hostile.audit_lines()
    chosen = {"DATAOPS_DATA_DIR": "", "DATAOPS_POLICY": "", variable: str(mine)}
    code, output = cli(hostile, "sql", "select * from marts.fct_gl_entries", token=hostile.tokens["finance"], **chosen)
    assert code == 3 and f"{variable} is honoured only for the platform's account" in " ".join(output.split())
    assert not any(mine.iterdir())
    (record,) = hostile.new_records(before)
    assert record["outcome"] == "denied" and record["source"] == "cli:uid 4242" and record["rows"] == 0


def test_the_cli_under_sudo_is_the_account_that_ran_sudo(
    hostile: Governed, platform_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployment lets analysts run the CLI as the platform's account through sudo, which records the
    caller in SUDO_UID (and clears the environment): that account is who asks, mapped like any other."""
    import pwd

    from dataops.governance.users import add_user

    nobody = pwd.getpwnam("nobody")
    add_user(hostile.settings, hostile.policy, "via_sudo", "analyst", os_user=nobody.pw_name)
    before = hostile.audit_lines()
    sudo = {"DATAOPS_DATA_DIR": "", "DATAOPS_POLICY": "", "SUDO_UID": str(nobody.pw_uid)}
    code, output = cli(hostile, "sql", "select 1 as one", "--format", "json", **sudo)
    assert code == 0, output
    (record,) = hostile.new_records(before)
    assert record["user"] == "via_sudo" and record["source"] == f"cli:{nobody.pw_name}"
    monkeypatch.setattr(os, "getuid", lambda: nobody.pw_uid)  # and nobody but the platform can claim sudo's word
    add_user(hostile.settings, hostile.policy, "root_mapped", "data_engineer", os_user="root")
    code, output = cli(hostile, "sql", "select 1 as one", **{**sudo, "SUDO_UID": "0"})
    assert code == 0 and hostile.new_records(before)[-1]["user"] == "via_sudo"


def test_repeated_failed_tokens_are_slowed_down_at_both_doors(governed: Governed, tmp_path: Path) -> None:
    strict = policy_with(
        governed,
        tmp_path,
        {
            "max_scan_rows": 5000,
            "statement_timeout_seconds": 30,
            "max_result_rows": 10,
            "memory_limit": "256MB",
            "threads": 1,
        },
        {"failed_tokens": {"free_attempts": 2, "window_seconds": 600, "max_delay_seconds": 600}},
    )
    wrong = "A" * 43
    (governed.settings.governance_dir / "failed_tokens.json").unlink(missing_ok=True)  # other tests' failures
    with serve(strict) as url:
        codes = [ask(url, wrong, "select 1").status_code for _ in range(2)]
        slowed = ask(url, strict.tokens["analyst"], "select 1")  # even the right token, from that source
    assert codes == [401, 401] and slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
    record = audit.read(strict.settings)[-1]
    assert record["brake"] == "failed_tokens" and record["outcome"] == "unauthenticated"
    for _ in range(2):
        assert cli(strict, "sql", "select 1", token=wrong)[0] == 3
    code, output = cli(strict, "sql", "select 1", token=strict.tokens["analyst"])
    assert code == 3 and "failed tokens" in output and audit.read(strict.settings)[-1]["brake"] == "failed_tokens"
    (governed.settings.governance_dir / "failed_tokens.json").unlink()  # and this test's, for the next ones


def test_the_cli_prints_no_traceback_and_answers_in_a_real_process(hostile: Governed) -> None:
    """The door as installed: a bind error is a clear message and an audit line, not a traceback."""
    env = {
        **os.environ,
        "DATAOPS_DATA_DIR": str(hostile.settings.data_dir),
        "DATAOPS_POLICY": str(hostile.policy_path),
        "DATAOPS_TOKEN": hostile.tokens["analyst"],
    }
    before = hostile.audit_lines()
    failed = subprocess.run(
        [str(DATAOPS), "sql", "select nope from kpis.kpi_daily"], env=env, capture_output=True, text=True, timeout=120
    )
    answered = subprocess.run(
        [str(DATAOPS), "sql", "select 1 as one", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 4 and "Traceback" not in failed.stderr and "nope" in failed.stderr
    assert answered.returncode == 0 and json_rows(answered.stdout) == [{"one": 1}]
    assert [r["outcome"] for r in hostile.new_records(before)] == ["invalid", "ok"]


def test_an_expiry_in_the_past_is_refused_and_a_revoked_user_is_refused_at_once(hostile: Governed) -> None:
    code, output = cli(hostile, "users", "add", "leaver", "--role", "analyst", "--expires-days", "-5")
    assert code == 2 and "greater than or equal to 1" in " ".join(output.split())
    code, output = cli(hostile, "users", "add", "short_stay", "--role", "analyst", "--expires-days", "1")
    token = output.split("shown once: ")[1].split()[0]
    assert code == 0 and cli(hostile, "sql", "select 1", token=token)[0] == 0
    assert cli(hostile, "users", "revoke", "short_stay")[0] == 0
    code, output = cli(hostile, "sql", "select 1", token=token)
    assert code == 3 and "revoked" in output
    (hostile.settings.governance_dir / "failed_tokens.json").unlink()
