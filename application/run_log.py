"""The platform's Dagster instance read without Dagster, for ``dataops status``.

Importing Dagster and opening an instance through it (which checks its storage's schema) takes two
seconds before the first query; ``status`` needs a few rows. The instance this platform creates keeps runs
and events in SQLite files under ``DAGSTER_HOME`` (``history/runs.db``, ``history/runs/<run>.db``), which
are read here directly, read-only. An instance configured with another storage (Postgres) is not
``readable`` here: callers then ask Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.lib.liveness import HEARTBEAT_TAG, PID_TAG, WORKER_PID, Liveness, judge

STORAGE_KEYS = ("storage:", "run_storage:", "event_log_storage:")


@dataclass(frozen=True)
class RunRow:
    run_id: str
    job_name: str
    status: str
    tags: dict[str, str]
    created: dt.datetime
    updated: dt.datetime
    ended: dt.datetime | None

    @property
    def dates(self) -> str:
        single = self.tags.get("dagster/partition")
        start, end = (
            self.tags.get("dagster/asset_partition_range_start"),
            self.tags.get("dagster/asset_partition_range_end"),
        )
        return single or (f"{start}..{end}" if start else build_dates(self.tags))


def build_dates(tags: dict[str, str]) -> str:
    """The business dates a build run covers (``dataops/window``, from the landing it followed), or ''."""
    window = tags.get("dataops/window", "")
    first, _, last = window.partition("..")
    return first if first == last else window


class RunLog:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runs_db = home / "history" / "runs.db"

    @property
    def readable(self) -> bool:
        """The instance exists and keeps its runs in the default SQLite storage under its home."""
        config = self.home / "dagster.yaml"
        if not (config.exists() and self.runs_db.exists()):
            return False
        return not any(line.startswith(STORAGE_KEYS) for line in config.read_text().splitlines())

    def _query(self, db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not db.exists():
            return []
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute(sql, params).fetchall()

    def runs(self, limit: int = 10, statuses: tuple[str, ...] = ()) -> list[RunRow]:
        """The latest runs, newest first (of the given statuses, if any)."""
        where = f"where status in ({', '.join('?' * len(statuses))})" if statuses else ""
        rows = self._query(
            self.runs_db,
            "select run_id, pipeline_name, status, create_timestamp, update_timestamp, end_time from runs "
            f"{where} order by id desc limit ?",
            (*statuses, limit),
        )
        tags: dict[str, dict[str, str]] = {}
        ids = tuple(r[0] for r in rows)
        marks = ", ".join("?" * len(ids))
        for run_id, key, value in self._query(
            self.runs_db, f"select run_id, key, value from run_tags where run_id in ({marks})", ids
        ):
            tags.setdefault(run_id, {})[key] = value
        return [
            RunRow(
                run_id,
                job,
                status,
                tags.get(run_id, {}),
                _utc(created),
                _utc(updated),
                dt.datetime.fromtimestamp(ended, dt.UTC) if ended else None,
            )
            for run_id, job, status, created, updated, ended in rows
        ]

    def events(self, run_id: str, event_type: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A run's stored events of one type, oldest first, as their JSON."""
        rows = self._query(
            self.home / "history" / "runs" / f"{run_id}.db",
            "select event from event_logs where dagster_event_type = ? order by id" + (" limit ?" if limit else ""),
            (event_type, limit) if limit else (event_type,),
        )
        return [json.loads(event) for (event,) in rows]

    def failed_checks(self, run_id: str) -> tuple[list[str], list[str]]:
        """The checks that failed in a run: errors, then warnings (as orchestration.lib.instance.failed_checks)."""
        failed: list[str] = []
        warned: list[str] = []
        for entry in self.events(run_id, "ASSET_CHECK_EVALUATION"):
            data = entry["dagster_event"]["event_specific_data"]
            if data.get("passed", True):
                continue
            name = f"{'/'.join(data['asset_key']['path'])}:{data['check_name']}"
            severity = (data.get("severity") or {}).get("__enum__", "")
            (warned if severity.endswith("WARN") else failed).append(name)
        return failed, warned

    def step_failures(self, run_id: str) -> list[str]:
        """Each failed step of a run with its root cause."""
        from application.runs import root_cause

        return [
            f"{entry['step_key']}: {root_cause(entry['dagster_event']['event_specific_data'])}"
            for entry in self.events(run_id, "STEP_FAILURE")
        ]

    def liveness(self, run: RunRow) -> Liveness:
        """Whether an unfinished run still has a process (as orchestration.lib.instance.liveness)."""
        worker = None
        if PID_TAG not in run.tags and HEARTBEAT_TAG not in run.tags:
            for entry in self.events(run.run_id, "ENGINE_EVENT", limit=20):
                found = WORKER_PID.search(entry.get("user_message") or "")
                if found:
                    worker = int(found.group(1))
                    break
        last = self._query(self.home / "history" / "runs" / f"{run.run_id}.db", "select max(timestamp) from event_logs")
        heard = max(run.updated, _utc(last[0][0])) if last and last[0][0] else run.updated
        return judge(run.tags, worker, heard.timestamp())


def _utc(value: str) -> dt.datetime:
    """A timestamp as SQLite stores Dagster's (naive, UTC)."""
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
