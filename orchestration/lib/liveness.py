"""Whether a run that says it is running still has a process: told from what the run records, without
Dagster (``dataops status`` reads the instance's storage directly; orchestration/lib/instance.py through Dagster).

A ``dataops`` run records its process id, host and a heartbeat in its tags; a run the daemon launched has
the process id Dagster logs when it starts the run worker. On this host the process itself is checked; a
run on another host only by its heartbeat; a run that records neither, by how long it has been silent.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PID_TAG = "dataops/pid"
HOST_TAG = "dataops/host"
HEARTBEAT_TAG = "dataops/heartbeat"  # unix seconds, renewed while the run's process lives
HEARTBEAT_SECONDS = 10.0
DEFAULT_HEARTBEAT_TIMEOUT = 120.0  # a heartbeat older than this is a dead run's (DATAOPS_RUN_HEARTBEAT_TIMEOUT)
SILENCE_TIMEOUT = 900.0  # a run that records no process is dead once silent this long
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")
# The run statuses of a run that has not ended (dagster.DagsterRunStatus names): one that may hold pool slots.
UNFINISHED = ("NOT_STARTED", "STARTING", "STARTED", "CANCELING")


@dataclass(frozen=True)
class Liveness:
    alive: bool
    why: str  # how it was told, for messages


def process_tags() -> dict[str, str]:
    """The tags that let any other process tell whether this one still runs the run."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), HEARTBEAT_TAG: str(int(time.time()))}


def heartbeat_timeout() -> float:
    return float(os.environ.get("DATAOPS_RUN_HEARTBEAT_TIMEOUT", DEFAULT_HEARTBEAT_TIMEOUT))


def process_alive(pid: int) -> bool:
    """Whether a process of this host exists and is not a zombie (killed, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # Linux: the state follows the command name in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def judge(tags: Mapping[str, str], worker_pid: int | None, last_heard: float, now: float | None = None) -> Liveness:
    """Whether an unfinished run still has a process working on it, from its tags, the run worker's process
    id (for a run the daemon launched) and when it last wrote anything (unix seconds)."""
    now = time.time() if now is None else now
    beat = now - float(tags[HEARTBEAT_TAG]) if HEARTBEAT_TAG in tags else None  # seconds since its last beat
    stale = beat is not None and beat > heartbeat_timeout()
    if PID_TAG in tags and tags.get(HOST_TAG) == socket.gethostname():
        pid = int(tags[PID_TAG])
        if not process_alive(pid):
            return Liveness(False, f"its process {pid} is gone")
        if stale:
            return Liveness(False, f"its heartbeat stopped {beat:.0f} s ago (process id {pid} was reused)")
        return Liveness(True, f"its process {pid} runs")
    if beat is not None:  # another host's run: only its heartbeat can tell
        host = tags.get(HOST_TAG)
        return Liveness(not stale, f"its heartbeat from {host} " + (f"stopped {beat:.0f} s ago" if stale else "beats"))
    if worker_pid is not None:
        alive = process_alive(worker_pid)
        return Liveness(alive, f"its run worker process {worker_pid} " + ("runs" if alive else "is gone"))
    if now - last_heard > SILENCE_TIMEOUT:  # a run that records no process (an older dataops, another tool)
        return Liveness(False, f"it records no process and has been silent for {now - last_heard:.0f} s")
    return Liveness(True, "it wrote events recently")
