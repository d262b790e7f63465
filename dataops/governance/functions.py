"""The worker's own checks of the statement that runs, with DuckDB's parser and planner (the second wall).

What the gateway's analysis decided (:mod:`.analysis`, on sqlglot's tree) is checked again on DuckDB's own
parse (``json_serialize_sql``) and plan (``EXPLAIN``) of the exact text that runs:

- every function is one the gateway allows: DuckDB's built-in scalar, aggregate, window and macro functions
  as reviewed (``duckdb_functions.txt``, this DuckDB's list: a function DuckDB adds later is refused until
  it is reviewed), less those that read state outside the query (settings, variables, sequences, the
  catalog, logs, SQL in strings): :data:`DENIED`; table functions only :data:`TABLE_FUNCTIONS`;
- every table reference names a table the query was authorised to read, or a CTE in DuckDB's own scope;
- every scan in the plan is of an authorised table or an allowed table function, and the tables it scans
  hold no more rows than the role's scan limit (their row counts, not the plan's estimate after filters).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

REVIEWED_FILE = Path(__file__).with_name("duckdb_functions.txt")
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
DENIED = frozenset(
    {
        # settings, variables, the catalog and the session: state outside the query
        "current_setting",
        "getvariable",
        "current_query",
        "current_query_id",
        "current_database",
        "current_catalog",
        "current_schema",
        "current_schemas",
        "in_search_path",
        "current_connection_id",
        "current_transaction_id",
        "txid_current",
        "get_block_size",
        # sequences
        "nextval",
        "currval",
        "setval",
        # SQL held in strings: planned, deserialised or run behind the gateway's back
        "json_serialize_plan",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_execute_serialized_sql",
        # logs
        "write_log",
        "parse_duckdb_log_message",
        # a query that only waits holds a slot for nothing
        "sleep_ms",
    }
)
# Plan operators that scan something other than a table or a table function (results of other operators).
INNER_SCANS = frozenset(
    {"CTE_SCAN", "REC_CTE_SCAN", "DUMMY_SCAN", "COLUMN_DATA_SCAN", "DELIM_SCAN", "CHUNK_SCAN", "EMPTY_RESULT"}
)
# Table references a query through the gateway has no use for (SHOW and DESCRIBE, bound or internal data).
FORBIDDEN_REFS = frozenset({"SHOW_REF", "COLUMN_DATA", "DELIM_GET", "BOUND_TABLE_REF"})


class Refusal(Exception):
    """The worker refused the statement: ``outcome`` and ``brake`` as in :class:`.analysis.Denied`."""

    def __init__(self, reason: str, outcome: str = "denied", brake: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.outcome, self.brake = reason, outcome, brake


def duckdb_functions(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """DuckDB's built-in scalar, aggregate, window and macro functions of its main schema."""
    rows = conn.execute(
        "select distinct function_name from duckdb_functions() where schema_name = 'main' "
        "and function_type in ('scalar', 'aggregate', 'window', 'macro') order by 1"
    ).fetchall()
    return [str(name) for (name,) in rows]


@cache
def allowed_functions() -> frozenset[str]:
    reviewed = {line.strip() for line in REVIEWED_FILE.read_text().splitlines() if line.strip()}
    return frozenset(name for name in reviewed if name not in DENIED and not name.startswith("__internal"))


def _walk(node: Any, ctes: frozenset[str]) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Every object of DuckDB's serialised parse, with the CTE names visible where it is."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, ctes)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        ctes = ctes | {str(entry.get("key", "")).lower() for entry in cte_map.get("map") or []}
    yield node, ctes
    for value in node.values():
        yield from _walk(value, ctes)


def _function_allowed(node: dict[str, Any], table_function: bool) -> bool:
    name = str(node.get("function_name", "")).lower()
    if str(node.get("catalog") or "").lower() not in ("", "system"):
        return False
    if str(node.get("schema") or "").lower() not in ("", "main"):
        return False
    return name in TABLE_FUNCTIONS if table_function else name in allowed_functions() | TABLE_FUNCTIONS


def check_parse(conn: duckdb.DuckDBPyConnection, sql: str, tables: set[str]) -> None:
    """DuckDB's own parse of the statement: one SELECT, allowed functions, authorised tables or CTEs."""
    parsed = json.loads(conn.execute("select json_serialize_sql($1::varchar)", [sql]).fetchone()[0])  # type: ignore[index]
    if parsed.get("error"):
        raise Refusal(f"DuckDB does not accept the statement: {parsed.get('error_message', '')}", outcome="invalid")
    if len(parsed.get("statements") or []) != 1:
        raise Refusal("one statement per query", outcome="invalid")
    table_function_nodes: set[int] = set()
    for node, ctes in _walk(parsed["statements"], frozenset()):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            table_function_nodes.add(id(function))
            if not _function_allowed(function, table_function=True):
                raise Refusal(f"table function {function.get('function_name')}() is not allowed")
        elif node.get("class") in ("FUNCTION", "WINDOW") and id(node) not in table_function_nodes:
            if not _function_allowed(node, table_function=False):
                raise Refusal(f"function {node.get('function_name')}() is not allowed through the gateway")
        elif kind == "BASE_TABLE":
            catalog, schema, table = (
                str(node.get(k) or "").lower() for k in ("catalog_name", "schema_name", "table_name")
            )
            if catalog or schema:
                if f"{catalog}.{schema}.{table}" not in tables:
                    raise Refusal("the statement reads a table that was not authorised", outcome="error")
            elif table not in ctes:
                raise Refusal("the statement reads a table that was not authorised", outcome="error")
        elif kind in FORBIDDEN_REFS:
            raise Refusal(f"{str(kind).lower()} is not allowed through the gateway")


def check_plan(conn: duckdb.DuckDBPyConnection, sql: str, tables: set[str]) -> dict[str, int]:
    """DuckDB's plan of the statement: what it scans, checked, with the row count of each table scanned
    (a table scanned twice counts twice)."""
    plan = json.loads(conn.execute(f"explain (format json) {sql}").fetchall()[0][1])
    scanned: dict[str, int] = {}
    stack = list(plan)
    while stack:
        node = stack.pop()
        stack.extend(node.get("children") or [])
        info = node.get("extra_info") or {}
        name = str(node.get("name", "")).strip()
        if isinstance(info, dict) and "Table" in info:
            table = str(info["Table"]).replace('"', "").lower()  # DuckDB quotes reserved words ("catalog")
            if table not in tables:
                raise Refusal("the plan scans a table that was not authorised", outcome="error")
            scanned[table] = scanned.get(table, 0) + 1
        elif isinstance(info, dict) and "Function" in info:
            if str(info["Function"]).lower() not in TABLE_FUNCTIONS:
                raise Refusal(f"the plan calls table function {info['Function']}, which is not allowed")
        elif name.endswith("SCAN") and name not in INNER_SCANS:
            raise Refusal(f"the plan has a scan the gateway does not know ({name}); refused", outcome="error")
    return scanned
