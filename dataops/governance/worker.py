"""Query workers: each query (its EXPLAIN included) runs in a process the gateway can kill.

A statement timeout that asks DuckDB to stop is only a request: a query busy inside one operator does not
look up. The brakes here do not depend on the query's cooperation: the gateway waits for the worker's answer
until the deadline and kills the process when it passes; it reads the worker's resident memory as it waits
and kills it above its ceiling, which the worker's own address-space limit (``RLIMIT_AS``) also enforces in
the kernel; DuckDB's memory limit, no spilling to disk, and the result limits in rows and bytes apply
inside. A killed worker is replaced; a warm pool keeps benign queries from paying a process start each
(docs/decisions/0024).

The worker opens a fresh in-memory DuckDB for every query, attaches only the published files the query was
authorised to read (read-only, under aliases fresh for the query), then disables external access and locks
the configuration before DuckDB sees the query, and checks DuckDB's own parse and plan of it
(:mod:`.functions`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import duckdb

from dataops.governance.functions import Refusal, check_parse, check_plan

POLL_SECONDS = 0.02
START_SECONDS = 120  # a worker's start-up (Python, DuckDB's import): not the statement's time, but bounded
READY = "ready"
RECYCLE_RSS_BYTES = 512 * 1024**2  # a worker left holding more than this after a query is replaced
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Job:
    sql: str
    files: dict[str, str]  # alias -> path of a published file
    tables: dict[str, int]  # alias.schema.table the statement may read -> its rows
    memory_limit: str
    threads: int
    ceiling_bytes: int
    max_scan_rows: int
    max_rows: int
    max_bytes: int


@dataclass
class Reply:
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    cut_by: str | None = None  # "row_limit" or "result_bytes" when the result was cut
    bytes: int = 0
    scanned_rows: int = 0
    refusal: tuple[str, str, str | None] | None = None  # reason, outcome, brake
    rss_after: int = 0


class Breach(Exception):
    """The worker had to be killed: ``brake`` says which limit it passed."""

    def __init__(self, brake: str, reason: str) -> None:
        super().__init__(reason)
        self.brake, self.reason = brake, reason


# --- in the worker ---


def value_bytes(value: Any) -> int:
    """About what a value weighs in a result (as JSON or Arrow would carry it)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode(errors="replace"))
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, int | float):
        return 8
    if isinstance(value, decimal.Decimal | dt.date | dt.time | dt.timedelta | uuid.UUID):
        return 16
    if isinstance(value, dict):
        return sum(value_bytes(k) + value_bytes(v) for k, v in value.items()) + 2
    if isinstance(value, list | tuple | set):
        return sum(value_bytes(v) for v in value) + 2
    return len(str(value))


def _fetch(
    cursor: duckdb.DuckDBPyConnection, max_rows: int, max_bytes: int
) -> tuple[list[tuple[Any, ...]], int, str | None]:
    rows: list[tuple[Any, ...]] = []
    total = 0
    batch = 16
    while True:
        chunk = cursor.fetchmany(min(batch, max_rows + 1 - len(rows)))
        if not chunk:
            return rows, total, None
        for row in chunk:
            if len(rows) == max_rows:
                return rows, total, "row_limit"
            size = sum(value_bytes(v) for v in row)
            if total + size > max_bytes:
                if not rows:
                    raise Refusal(
                        f"result size limit: the first row alone is {size:,} bytes, above the {max_bytes:,} allowed",
                        outcome="braked",
                        brake="result_bytes",
                    )
                return rows, total, "result_bytes"
            rows.append(row)
            total += size
        batch = min(batch * 4, 2048)


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * PAGE


def _rss_bytes(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _set_ceiling(extra: int | None) -> None:
    """The address-space limit of this process: what it uses now plus ``extra``, or none."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard if extra is None else _vm_bytes() + extra
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _strip(text: str, files: dict[str, str]) -> str:
    """A message without the query's file aliases, or the EXPLAIN the gateway put before the statement."""
    for alias in files:
        text = text.replace(f'"{alias}".', "").replace(f"{alias}.", "")
    return text.replace("explain (format json) ", "")


def open_database(job: Job) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB with the job's files attached read-only, then no external access and a locked
    configuration: no file, extension or setting is reachable from SQL."""
    db = duckdb.connect(
        config={
            "memory_limit": job.memory_limit,
            "threads": job.threads,
            "temp_directory": "",  # no spilling to disk: a query that needs more memory stops
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        for alias, path in job.files.items():
            db.execute(f"attach '{path.replace(chr(39), chr(39) * 2)}' as \"{alias}\" (read_only)")
        db.execute("set enable_external_access = false")
        db.execute("set lock_configuration = true")
    except BaseException:
        db.close()
        raise
    return db


def run_job(job: Job) -> Reply:
    """Run one query under its limits (in the worker process)."""
    reply, closing = _run(job)
    if closing is not None:
        closing.close()
    return reply


def _run(job: Job) -> tuple[Reply, duckdb.DuckDBPyConnection | None]:
    """The reply, and the database to close once it is sent (closing takes a few milliseconds)."""
    reply = Reply()
    db: duckdb.DuckDBPyConnection | None = None
    counts = job.tables
    _set_ceiling(job.ceiling_bytes)
    try:
        db = open_database(job)
        check_parse(db, job.sql, set(job.tables))
        scanned = check_plan(db, job.sql, set(job.tables))
        reply.scanned_rows = sum(counts.get(t, 0) * n for t, n in scanned.items())
        if reply.scanned_rows > job.max_scan_rows:
            biggest = sorted(scanned, key=lambda t: -counts.get(t, 0) * scanned[t])[:3]
            listed = ", ".join(f"{_strip(t, job.files)} {counts.get(t, 0) * scanned[t]:,}" for t in biggest)
            raise Refusal(
                f"scan limit: the plan scans tables of {reply.scanned_rows:,} rows ({listed}), above the "
                f"{job.max_scan_rows:,} allowed",
                outcome="braked",
                brake="scan_limit",
            )
        cursor = db.execute(job.sql)
        reply.columns = [str(d[0]) for d in cursor.description or []]
        reply.types = [str(d[1]) for d in cursor.description or []]
        reply.rows, reply.bytes, reply.cut_by = _fetch(cursor, job.max_rows, job.max_bytes)
    except Refusal as refusal:
        reply.refusal = (refusal.reason, refusal.outcome, refusal.brake)
    except (duckdb.OutOfMemoryException, MemoryError):
        reply = Reply(refusal=("memory limit: the query needed more memory than its limit", "braked", "memory_limit"))
    except duckdb.Error as exc:
        message = _strip(str(exc).strip().split("\nLINE ")[0].strip(), job.files)
        reply = Reply(refusal=(message, "invalid", None))
    except Exception as exc:  # anything else is the gateway's own failure: refused, closed
        reply = Reply(refusal=(f"the query's worker failed ({type(exc).__name__})", "error", None))
    finally:
        _set_ceiling(None)
    reply.rss_after = _rss_bytes()
    return reply, db


def serve(conn: Connection) -> None:
    """The worker's loop: one job at a time until the gateway closes the pipe. It says when it is ready, so that
    a statement's deadline counts the statement, not the interpreter's start on a loaded machine."""
    try:
        conn.send(READY)
    except OSError:
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        reply, db = _run(job)
        try:
            conn.send(reply)
        except (TypeError, ValueError, AttributeError) as exc:  # a value that does not pickle
            conn.send(Reply(refusal=(f"the result could not be returned ({type(exc).__name__})", "invalid", None)))
        finally:
            if db is not None:
                db.close()


# --- in the gateway ---


class Worker:
    """A worker process (``python -I -m dataops.governance.worker``: isolated from the caller's environment
    and working directory), reached over a socket pair."""

    def __init__(self) -> None:
        parent, child = socket.socketpair()
        self.process = subprocess.Popen(
            self.command(child.fileno()),
            pass_fds=[child.fileno()],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd="/",
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.ready = False

    def command(self, fd: int) -> list[str]:
        return [sys.executable, "-I", "-m", "dataops.governance.worker", str(fd)]

    def _wait_ready(self) -> None:
        """Until the worker has started (once): its start-up is not the statement's time."""
        if self.ready:
            return
        try:
            ready = self.conn.poll(START_SECONDS) and self.conn.recv() == READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise Breach("worker_died", f"the query's worker did not start in {START_SECONDS}s; nothing was run")
        self.ready = True

    def run(self, job: Job, timeout: float) -> Reply:
        """Send the job and wait for the answer; kill the worker at the deadline or above its ceiling."""
        self._wait_ready()
        self.conn.send(job)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.conn.poll(POLL_SECONDS):
                    reply: Reply = self.conn.recv()
                    return reply
            except (EOFError, OSError):
                self.kill()
                raise Breach(
                    "worker_died",
                    f"the query's worker died (exit status {self.process.returncode}); nothing was returned",
                ) from None
            if _rss_bytes(self.process.pid) > job.ceiling_bytes:
                self.kill()
                raise Breach(
                    "memory_limit",
                    f"memory limit: the query's worker passed its ceiling of {job.ceiling_bytes / 1024**2:,.0f} MiB "
                    "and was stopped",
                )
            if time.monotonic() > deadline:
                self.kill()
                raise Breach("statement_timeout", f"statement timeout: stopped after {timeout:g}s")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.conn.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class WorkerPool:
    """Idle workers kept warm; a worker that breached a limit, died or holds too much memory is replaced."""

    def __init__(self) -> None:
        self._idle: list[Worker] = []
        self._lock = threading.Lock()

    def warm(self, count: int) -> None:
        with self._lock:
            missing = count - len(self._idle)
        started = [Worker() for _ in range(max(0, missing))]
        with self._lock:
            self._idle.extend(started)

    def run(self, job: Job, timeout: float) -> Reply:
        with self._lock:
            worker = None
            while self._idle and worker is None:
                candidate = self._idle.pop()
                worker = candidate if candidate.alive else None
        worker = worker or Worker()
        try:
            reply = worker.run(job, timeout)
        except BaseException:
            worker.kill()
            raise
        if reply.rss_after > RECYCLE_RSS_BYTES or not worker.alive:
            worker.kill()
        else:
            with self._lock:
                self._idle.append(worker)
        return reply

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_POOL = WorkerPool()


def pool() -> WorkerPool:
    """The process's pool (shared by every gateway of the process)."""
    return _POOL


if __name__ == "__main__":  # the worker: run under the module's own name, so that replies unpickle as such
    from dataops.governance import worker

    worker.serve(Connection(int(sys.argv[1])))
