"""Where a run's wall time goes, per xdist worker: ``TESTS_TIMELINE=<folder> pytest -p tests.timeline``, then
``python -m tests.timeline <folder>`` for each worker's groups in turn, the shared fixtures and the lock waits.

Each worker writes one JSON line per test and per shared fixture's set-up (module scope or wider, over half a
second): its start and end, and the CPU of the worker and of the children it waited for (a dbt subprocess; not
Spark's JVM, nor the processes a test's servers start: `tests/cpu_meter.py` counts those). It also logs each
`fcntl.flock` the worker waited for (the registry seeds' and the parse's locks). The controller samples the
machine's busy cores every second. Summed test time says little with two workers on two cores: a test's wall
time holds its neighbour's load and the locks it waited for, which this shows (docs/testing.md, "Stop 40").
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import pytest

FOLDER = os.environ.get("TESTS_TIMELINE")
_files: dict[str, IO[str]] = {}
_config: list[pytest.Config] = []
_flock = fcntl.flock


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _write(config: pytest.Config, record: dict[str, Any]) -> None:
    if FOLDER is None:
        return
    worker = str(getattr(config, "workerinput", {}).get("workerid", "controller"))
    if worker not in _files:
        Path(FOLDER).mkdir(parents=True, exist_ok=True)
        _files[worker] = open(Path(FOLDER) / f"{worker}.jsonl", "a", buffering=1)  # noqa: SIM115 (the session's)
    _files[worker].write(json.dumps({**record, "worker": worker}) + "\n")


def _busy_cores(path: Path) -> None:
    def idle_and_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    cores = os.cpu_count() or 1
    before = idle_and_total()
    with path.open("a", buffering=1) as out:
        while True:
            time.sleep(1.0)
            now = idle_and_total()
            busy = 1 - (now[0] - before[0]) / max(1, now[1] - before[1])
            out.write(f"{time.time():.1f} {busy * cores:.2f}\n")
            before = now


def _timed_flock(fd: Any, operation: int) -> None:
    started = time.time()
    _flock(fd, operation)
    if time.time() - started > 0.05 and _config:
        number = fd if isinstance(fd, int) else fd.fileno()
        path = os.readlink(f"/proc/self/fd/{number}")
        _write(_config[0], {"kind": "flock", "id": path, "start": started, "end": time.time()})


def pytest_configure(config: pytest.Config) -> None:
    if FOLDER is None:
        return
    _config.append(config)
    fcntl.flock = _timed_flock
    if not hasattr(config, "workerinput"):
        Path(FOLDER).mkdir(parents=True, exist_ok=True)
        threading.Thread(target=_busy_cores, args=(Path(FOLDER) / "machine.txt",), daemon=True).start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    started, (own, children) = time.time(), _cpu()
    yield
    own_after, children_after = _cpu()
    record = {"kind": "test", "id": item.nodeid, "start": started, "end": time.time()}
    _write(item.config, record | {"cpu": own_after - own, "children_cpu": children_after - children})


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[None]:
    started, (own, children) = time.time(), _cpu()
    yield
    own_after, children_after = _cpu()
    if fixturedef.scope != "function" and time.time() - started > 0.5:
        record = {"kind": "fixture", "id": fixturedef.argname, "start": started, "end": time.time()}
        _write(request.config, record | {"cpu": own_after - own, "children_cpu": children_after - children})


def _line(worker: str, start: float, end: float, what: str) -> str:
    return f"{worker} {start:6.0f} {end:6.0f}  wall {end - start:6.1f}  {what}"


def summary(folder: Path) -> list[str]:
    """Each worker's xdist groups in the order it ran them (start and end in seconds from the first test, wall
    time, CPU of the worker and its waited children), then the fixtures and lock waits over a second."""
    records = [json.loads(line) for path in sorted(folder.glob("gw*.jsonl")) for line in path.open()]
    if not records:
        return []
    first = min(r["start"] for r in records)
    lines = []
    for worker in sorted({r["worker"] for r in records}):
        spans: list[list[Any]] = []  # group, start, end, CPU, tests
        tests = sorted((r for r in records if r["worker"] == worker and r["kind"] == "test"), key=lambda r: r["start"])
        for r in tests:
            group = r["id"].rsplit("@", 1)[1] if "@" in r["id"] else "-"
            if not spans or spans[-1][0] != group:
                spans.append([group, r["start"], r["end"], 0.0, 0])
            spans[-1][2:] = [r["end"], spans[-1][3] + r["cpu"] + r["children_cpu"], spans[-1][4] + 1]
        for group, start, end, cpu, count in spans:
            lines.append(_line(worker, start - first, end - first, f"CPU {cpu:6.1f}  {count:3d} tests  {group}"))
    others = sorted((r for r in records if r["kind"] != "test" and r["end"] - r["start"] > 1), key=lambda r: r["start"])
    for r in others:
        cpu = f"CPU {r['cpu'] + r['children_cpu']:6.1f}" if r["kind"] == "fixture" else "waited"
        lines.append(
            _line(r["worker"], r["start"] - first, r["end"] - first, f"{cpu}  {r['kind']} {Path(r['id']).name}")
        )
    return lines


if __name__ == "__main__":
    print("\n".join(summary(Path(sys.argv[1]))))
