"""The query gateway: the one door to the published data, behind the CLI and the HTTP API alike.

Every query is authenticated (by the door), analysed and authorised on what will actually run
(:mod:`.analysis`: table references resolved with their scopes, rewritten to the file that may answer the
role, authorised again), then run in a worker process the gateway can kill (:mod:`.worker`), which checks
DuckDB's own parse and plan of it (:mod:`.functions`) under the role's brakes: scan limit from the row counts
of the tables the plan scans, a wall-clock deadline, a memory ceiling, concurrency caps per user and for the
whole gateway (:mod:`.slots`), and result limits in rows and bytes. Every request is audited once, whatever
comes of it (:mod:`.audit`); an error never names data the role may not read.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb

from dataops.core.settings import Settings
from dataops.governance import audit, slots
from dataops.governance.analysis import GENERAL, RESTRICTED, Analysis, Dataset, Denied, authorise
from dataops.governance.policy import Limits, Policy
from dataops.governance.users import User
from dataops.governance.worker import Breach, Job, Reply, pool

__all__ = ["Dataset", "Denied", "Gateway", "QueryResult"]
# Schemas of the analyst file readable through the gateway besides the catalogued datasets: the publish log,
# KPI history and quarantine summary, and the catalog itself (no personal data in either).
OPEN_SCHEMAS = ("publish", "catalog")


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
    bytes: int = 0
    cut_by: str | None = None  # the brake that cut the result: row_limit or result_bytes


def _tables(path: str, database: str) -> dict[str, tuple[list[tuple[str, str]], int]]:
    """Each table of a published file: its columns (name, type) and its rows."""
    with duckdb.connect(path, read_only=True) as conn:
        columns = conn.execute(
            "select lower(schema_name || '.' || table_name), column_name, data_type from duckdb_columns() "
            "where database_name = ? order by schema_name, table_name, column_index",
            [database],
        ).fetchall()
        rows = dict(
            conn.execute(
                "select lower(schema_name || '.' || table_name), estimated_size from duckdb_tables() "
                "where database_name = ?",
                [database],
            ).fetchall()
        )
    out: dict[str, tuple[list[tuple[str, str]], int]] = {}
    for table, column, kind in columns:
        out.setdefault(str(table), ([], int(rows.get(table) or 0)))[0].append((str(column), str(kind)))
    return out


# What the published files hold, per pair of files as they are on disk (a publish swaps in new inodes).
_PUBLISHED: dict[tuple[Any, ...], dict[str, Dataset]] = {}


class Gateway:
    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def _files_key(self) -> tuple[Any, ...]:
        key: list[Any] = [self.settings.data_dir]
        for path in (self.settings.analytics_db, self.settings.restricted_db):
            stat = path.stat() if path.exists() else None
            key.append(None if stat is None else (stat.st_ino, stat.st_mtime_ns, stat.st_size))
        return tuple(key)

    def datasets(self) -> dict[str, Dataset]:
        """What is published, in which file and how it is classified: the analyst file's catalog and the
        tables the two files actually hold (read again when a publish swaps them)."""
        key = self._files_key()
        if key in _PUBLISHED:
            return _PUBLISHED[key]
        if key[1] is None:
            raise Denied("nothing is published yet", outcome="invalid")
        general = _tables(str(self.settings.analytics_db), "analytics")
        restricted = _tables(str(self.settings.restricted_db), "restricted") if key[2] is not None else {}
        with duckdb.connect(str(self.settings.analytics_db), read_only=True) as conn:
            catalogued = conn.execute("select dataset, classification, pii_columns from catalog.datasets").fetchall()
        out: dict[str, Dataset] = {}
        for name, classification, pii in catalogued:
            name = str(name).lower()
            files = frozenset(f for f, held in ((GENERAL, general), (RESTRICTED, restricted)) if name in held)
            columns, rows = general.get(name) or restricted.get(name) or ([], 0)
            pii_columns = frozenset(json.loads(pii or "[]"))
            out[name] = Dataset(name, str(classification), pii_columns, files, tuple(columns), rows)
        for name, (columns, rows) in general.items():
            if name.split(".", 1)[0] in OPEN_SCHEMAS and name not in out:
                out[name] = Dataset(name, "internal", frozenset(), frozenset({GENERAL}), tuple(columns), rows)
        _PUBLISHED.clear()  # one publish at a time is current
        _PUBLISHED[key] = out
        return out

    def run(self, user: User, sql: str, door: str, entry: audit.Entry | None = None) -> QueryResult:
        """Run one query for a user, or refuse it. The request is recorded in ``entry``; without one (a
        caller that is not a door), the gateway records it in the audit itself, before returning."""
        own = entry is None
        entry = audit.Entry(door, sql) if entry is None else entry
        entry.statement(sql)
        entry.update(user=user.name, role=user.role)
        started = time.monotonic()
        try:
            result = self._run(user, sql, entry)
            entry.update(
                allowed=True,
                outcome="ok",
                reason="",
                rows=len(result.rows),
                bytes=result.bytes,
                truncated=result.truncated,
                brake=result.cut_by,
            )
            return result
        except Denied as denied:
            entry.refuse(denied.outcome, denied.reason, denied.brake)
            raise
        except Exception as exc:
            entry.refuse("error", f"the gateway failed ({type(exc).__name__}); the query was not answered")
            raise Denied("the gateway failed; the query was not answered", outcome="error") from exc
        finally:
            entry["duration_ms"] = round((time.monotonic() - started) * 1000)
            if own:
                audit.record(self.settings, entry)

    def _run(self, user: User, sql: str, entry: audit.Entry) -> QueryResult:
        started = time.monotonic()
        limits = self.policy.limits(user.role)
        server = self.policy.server
        datasets = self.datasets()
        with slots.hold(  # the analysis too: what an analyst sends costs the gateway only within their slots
            self.settings, user.name, limits.max_concurrent_queries, server.max_concurrent_queries, server.queue_seconds
        ):
            analysis = authorise(sql, datasets, self.policy, user.role, server.max_statement_bytes)
            executed = analysis.sql
            for file, alias in analysis.aliases.items():
                executed = executed.replace(alias, file)
            entry.update(datasets=analysis.datasets, columns=analysis.columns, executed=executed)
            reply = self._execute(analysis, datasets, limits, user.role)
        entry["scanned_rows"] = reply.scanned_rows
        if reply.refusal is not None:
            reason, outcome, brake = reply.refusal
            if brake is not None:
                reason = f"{reason}, the limit of role {user.role}; narrow the query, or {self._ask()}"
            raise Denied(self._redact(reason, datasets, user.role), brake=brake, outcome=outcome)
        notes = list(analysis.notes)
        if reply.cut_by == "row_limit":
            notes.append(
                f"the result was cut at {limits.max_result_rows} rows (the row limit of role {user.role}); "
                f"add filters or aggregate. {self.policy.how_to_ask}"
            )
        elif reply.cut_by == "result_bytes":
            notes.append(
                f"the result was cut at {len(reply.rows)} rows, before it passed {limits.max_result_bytes:,} bytes "
                f"(the result size limit of role {user.role}); select fewer or shorter columns. "
                f"{self.policy.how_to_ask}"
            )
        return QueryResult(
            reply.columns,
            reply.types,
            reply.rows,
            reply.cut_by is not None,
            limits.max_result_rows,
            round((time.monotonic() - started) * 1000),
            analysis.datasets,
            notes,
            bytes=reply.bytes,
            cut_by=reply.cut_by,
        )

    def _ask(self) -> str:
        ask = self.policy.how_to_ask
        return ask[0].lower() + ask[1:] if ask else "ask the data platform team"

    def _execute(self, analysis: Analysis, datasets: dict[str, Dataset], limits: Limits, role: str) -> Reply:
        files = {GENERAL: self.settings.analytics_db, RESTRICTED: self.settings.restricted_db}
        job = Job(
            sql=analysis.sql,
            files={alias: str(files[file]) for file, alias in analysis.aliases.items()},
            tables={table: datasets[table.split(".", 1)[1]].rows for table in analysis.tables},
            memory_limit=limits.memory_limit,
            threads=limits.threads,
            ceiling_bytes=limits.worker_ceiling_bytes,
            max_scan_rows=limits.max_scan_rows,
            max_rows=limits.max_result_rows,
            max_bytes=limits.max_result_bytes,
        )
        try:
            return pool().run(job, limits.statement_timeout_seconds)
        except Breach as breach:
            raise Denied(
                f"{breach.reason}, the limit of role {role}; narrow the query, or {self._ask()}", brake=breach.brake
            ) from None

    def _redact(self, message: str, datasets: dict[str, Dataset], role: str) -> str:
        """DuckDB's message, unless it names a table or column the role may not read."""
        readable = {n for n, d in datasets.items() if self.policy.can_read(role, n, d.classification)}
        allowed_words = {w for n in readable for w in (n, n.split(".", 1)[1], *(c for c, _ in datasets[n].columns))}
        secret = {
            word
            for name, dataset in datasets.items()
            if name not in readable
            for word in (name.split(".", 1)[1], *(c for c, _ in dataset.columns))
            if word.lower() not in {a.lower() for a in allowed_words}
        }
        secret |= {"restricted_", "general_"}
        lowered = message.lower()
        if any(re.search(rf"(?<![a-z0-9_]){re.escape(w.lower())}(?![a-z0-9])", lowered) for w in secret):
            return "the query failed (DuckDB's message is withheld: it names data your role may not read)"
        return message
