"""The query gateway: the one door to the published data, behind the CLI and the HTTP API alike.

Every query is authenticated (by the caller), parsed (DuckDB's own parser says what the statement is;
sqlglot gives the tables, columns and functions it touches), authorised against the policy, braked (scan
limit from the plan before it runs, statement timeout, row limit, memory and threads) and audited, allowed or
not. DuckDB's own protections are the second wall: the gateway's connection attaches the published files
read-only, then disables external access and locks its configuration.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.policy import Policy
from dataops.governance.users import User

READABLE_SCHEMAS = ("marts", "kpis", "reference", "catalog", "publish", "information_schema")
DENIED_FUNCTION_PREFIXES = ("read_", "parquet_", "sqlite_", "pg_", "duckdb_", "iceberg_", "delta_")
DENIED_FUNCTIONS = {
    "glob",
    "getenv",
    "query",
    "query_table",
    "sniff_csv",
    "current_setting",
    "load_extension",
    "json_execute_serialized_sql",
    "which_secret",
    "read_text",
    "read_blob",
    "writefile",
}


class Denied(PermissionError):
    """The gateway refused the query; ``brake`` names the limit that stopped it, if one did."""

    def __init__(self, reason: str, brake: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.brake = brake


@dataclass
class DatasetInfo:
    classification: str
    pii_columns: set[str]
    in_restricted_file: bool


@dataclass
class Analysis:
    statement: exp.Expr
    datasets: list[str]
    columns: list[str]


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    row_limit: int
    duration_ms: int
    datasets: list[str]
    notes: list[str] = field(default_factory=list)


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.sql_name()).lower() if isinstance(node, exp.Func) else ""


def analyse(sql: str, datasets: dict[str, DatasetInfo]) -> Analysis:
    """What the statement is and what it touches; refuses anything that is not one plain query."""
    try:
        statements = duckdb.connect().extract_statements(sql)
    except duckdb.Error as exc:
        raise Denied(f"the SQL does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise Denied(
            f"one statement per query: found {len(statements)} (a second statement after a semicolon is not run)"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise Denied(f"only SELECT queries are allowed through the gateway; this is {kind.name}")
    try:
        parsed = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise Denied(f"the SQL could not be analysed: {str(exc).splitlines()[0]}") from None
    statement = parsed[0]
    if statement is None or not isinstance(statement, exp.Query):
        raise Denied("only SELECT queries are allowed through the gateway")
    for node in statement.walk():
        name = _function_name(node)
        if name and (name in DENIED_FUNCTIONS or name.startswith(DENIED_FUNCTION_PREFIXES)):
            raise Denied(f"function {name}() is not allowed: it reads files or settings outside the published datasets")
        if isinstance(node, exp.Command | exp.Pragma | exp.Set | exp.Copy | exp.Attach | exp.Install):
            raise Denied("only plain queries are allowed through the gateway")
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    touched: dict[str, str] = {}  # alias or name -> dataset
    names: list[str] = []
    by_table: dict[str, list[str]] = {}
    for name in datasets:
        by_table.setdefault(name.split(".", 1)[1], []).append(name)
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise Denied(f"table functions are not allowed ({table.this.sql('duckdb')}): query published datasets")
        if table.catalog:
            raise Denied("name datasets as schema.table; the gateway chooses which published file answers")
        if not table.db and table.name in ctes:
            continue
        if table.db:
            dataset = f"{table.db}.{table.name}"
        else:
            candidates = by_table.get(table.name, [])
            if len(candidates) != 1:
                raise Denied(f"no dataset named {table.name!r}; use schema.table (`dataops catalog search`)")
            dataset = candidates[0]
        if dataset.split(".")[0] not in READABLE_SCHEMAS or (
            dataset not in datasets and not dataset.startswith("information_schema.")
        ):
            raise Denied(f"no dataset {dataset!r} is published; `dataops catalog search TEXT` lists them")
        touched[table.alias_or_name] = dataset
        touched[table.name] = dataset
        names.append(dataset)
    columns = []
    single = names[0] if len(set(names)) == 1 else None
    for column in statement.find_all(exp.Column):
        owner = touched.get(column.table) if column.table else single
        columns.append(f"{owner or '?'}.{column.name}")
    if any(isinstance(s, exp.Star) for s in statement.find_all(exp.Star)):
        columns += [f"{d}.*" for d in sorted(set(names))]
    return Analysis(statement, sorted(set(names)), sorted(set(columns)))


class Gateway:
    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def datasets(self) -> dict[str, DatasetInfo]:
        """What is published and how it is classified, from the general file's catalog."""
        if not self.settings.analytics_db.exists():
            raise Denied("nothing is published yet")
        with duckdb.connect(str(self.settings.analytics_db), read_only=True) as conn:
            rows = conn.execute(
                "select dataset, classification, pii_columns, published_file from catalog.datasets"
            ).fetchall()
        # restricted datasets, and the clear copy of datasets with personal data, live in the restricted file
        return {
            d: DatasetInfo(c, set(json.loads(p or "[]")), f == "restricted" or p not in (None, "[]"))
            for d, c, p, f in rows
        }

    def run(self, user: User, sql: str, door: str) -> QueryResult:
        """Run one query for a user, or refuse it; audited either way."""
        started = time.monotonic()
        entry: dict[str, Any] = {"user": user.name, "role": user.role, "door": door, "statement": sql}
        try:
            result = self._run(user, sql, entry)
        except Denied as denied:
            entry.update(
                allowed=False,
                reason=denied.reason,
                brake=denied.brake,
                rows=0,
                duration_ms=round((time.monotonic() - started) * 1000),
            )
            audit.record(self.settings, entry)
            raise
        entry.update(
            allowed=True,
            reason="",
            rows=len(result.rows),
            truncated=result.truncated,
            duration_ms=result.duration_ms,
            brake="row_limit" if result.truncated else None,
        )
        audit.record(self.settings, entry)
        return result

    def _run(self, user: User, sql: str, entry: dict[str, Any]) -> QueryResult:
        started = time.monotonic()
        limits = self.policy.limits(user.role)
        published = self.datasets()
        analysis = analyse(sql, published)
        entry.update(datasets=analysis.datasets, columns=analysis.columns)
        notes, use_restricted = [], False
        for dataset in analysis.datasets:
            info = published.get(dataset)
            if info is None:
                continue
            if not self.policy.can_read(user.role, dataset, info.classification):
                granted = ", ".join(self.policy.readers(dataset, info.classification)) or "nobody"
                raise Denied(
                    f"{dataset} is restricted: granted to {granted}; your role is {user.role}. {self.policy.how_to_ask}"
                )
            clear = info.pii_columns and self.policy.sees_personal_data(user.role, dataset)
            if info.classification == "restricted" or clear:
                use_restricted = True
            elif info.pii_columns:
                notes.append(f"{dataset}: personal data ({', '.join(sorted(info.pii_columns))}) is pseudonymised")
        rewritten = self._qualify(analysis.statement, published, user)
        conn = self._connect(limits.memory_limit, limits.threads, use_restricted)
        try:
            self._check_scan(conn, rewritten, limits.max_scan_rows, user.role)
            rows, columns, types, truncated = self._execute(
                conn, rewritten, limits.statement_timeout_seconds, limits.max_result_rows, user.role
            )
        finally:
            conn.close()
        if truncated:
            notes.append(
                f"the result was cut at {limits.max_result_rows} rows (the row limit of role {user.role}); "
                f"add filters or aggregate. {self.policy.how_to_ask}"
            )
        return QueryResult(
            columns,
            types,
            rows,
            truncated,
            limits.max_result_rows,
            round((time.monotonic() - started) * 1000),
            analysis.datasets,
            notes,
        )

    def _qualify(self, statement: exp.Expr, published: dict[str, DatasetInfo], user: User) -> str:
        """Point every table at the published file that may answer this role."""
        tree = statement.copy()
        for table in tree.find_all(exp.Table):
            if not table.db:
                matches = [d for d in published if d.split(".", 1)[1] == table.name]
                if len(matches) != 1:
                    continue  # a CTE name
                table.set("db", exp.to_identifier(matches[0].split(".")[0]))
            dataset = f"{table.db}.{table.name}"
            info = published.get(dataset)
            restricted = (
                info is not None
                and info.in_restricted_file
                and (info.classification == "restricted" or self.policy.sees_personal_data(user.role, dataset))
            )
            table.set("catalog", exp.to_identifier("restricted" if restricted else "analytics"))
        return str(tree.sql(dialect="duckdb"))

    def _connect(self, memory_limit: str, threads: int, restricted: bool) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
        conn.execute(f"attach '{self.settings.analytics_db}' as analytics (read_only)")
        if restricted:
            conn.execute(f"attach '{self.settings.restricted_db}' as restricted (read_only)")
        conn.execute("use analytics")
        conn.execute("set enable_external_access = false")  # the second wall: no files, no extensions
        conn.execute("set lock_configuration = true")  # and no SET to lift a limit
        return conn

    def _check_scan(self, conn: duckdb.DuckDBPyConnection, sql: str, limit: int, role: str) -> None:
        plan = json.loads(conn.execute(f"explain (format json) {sql}").fetchall()[0][1])
        scans: dict[str, int] = {}

        def walk(node: dict[str, Any]) -> None:
            info = node.get("extra_info") or {}
            if "SCAN" in node.get("name", "") and isinstance(info, dict) and "Table" in info:
                estimate = int(str(info.get("Estimated Cardinality", "0")).replace("~", "") or 0)
                scans[info["Table"]] = scans.get(info["Table"], 0) + estimate
            for child in node.get("children", []):
                walk(child)

        for root in plan:
            walk(root)
        total = sum(scans.values())
        if total > limit:
            biggest = ", ".join(f"{t} ~{n:,}" for t, n in sorted(scans.items(), key=lambda kv: -kv[1])[:3])
            raise Denied(
                f"scan limit: the plan would scan ~{total:,} rows ({biggest}), above the {limit:,} "
                f"allowed to role {role}; add filters, or {self.policy.how_to_ask}",
                brake="scan_limit",
            )

    def _execute(
        self, conn: duckdb.DuckDBPyConnection, sql: str, timeout: float, max_rows: int, role: str
    ) -> tuple[list[tuple[Any, ...]], list[str], list[str], bool]:
        timer = threading.Timer(timeout, conn.interrupt)
        timer.start()
        try:
            cursor = conn.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            types = [str(d[1]) for d in cursor.description or []]
            rows = cursor.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise Denied(
                f"statement timeout: stopped after {timeout:g}s, the limit of role {role}; "
                f"narrow the query, or {self.policy.how_to_ask}",
                brake="statement_timeout",
            ) from None
        except duckdb.Error as exc:
            if "interrupt" in str(exc).lower():
                raise Denied(
                    f"statement timeout: stopped after {timeout:g}s, the limit of role {role}",
                    brake="statement_timeout",
                ) from None
            raise Denied(f"the query failed: {str(exc).splitlines()[0]}") from None
        finally:
            timer.cancel()
        truncated = len(rows) > max_rows
        return rows[:max_rows], columns, types, truncated
