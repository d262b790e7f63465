"""Where a run's wall time goes, per xdist worker: ``TESTS_TIMELINE=<folder> pytest -p tests.timeline``, then
``python -m tests.timeline <folder>`` for each worker's groups in turn, the shared fixtures and the lock waits.

Each worker writes one JSON line per test and per shared fixture's set-up (module scope or wider, over half a
second): its start and end, and the CPU of the worker and of the children it waited for (a dbt subprocess; not
Spark's JVM, nor the processes a test's servers start: `tests/cpu_meter.py` counts those). It also logs each
`fcntl.flock` the worker waited for (the registry seeds' and the parse's locks). The controller samples the
machine's busy cores every second. Summed test time says little with two workers on two cores: a test's wall
time holds its neighbour's load and the locks it waited for, which this shows (docs/testing.md, "Stop 40").

With ``TESTS_TIMELINE_CGROUP=<a cgroup v1 cpuacct hierarchy>`` (``/sys/fs/cgroup/cpuacct``, as root), each worker
first moves into a cgroup of its own, so each record also has ``tree_cpu``: the CPU of every process the worker
started while the test or fixture ran (servers, JVMs, forked dbt processes, whoever waits for them), and the
summary ends with the tests that cost most (docs/testing.md, "Stop 55").
"""

from __future__ import annotations

import contextlib
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
CGROUPS = os.environ.get("TESTS_TIMELINE_CGROUP")
_files: dict[str, IO[str]] = {}
_config: list[pytest.Config] = []
_cgroup: list[Path] = []  # this worker's own cgroup, once it has moved in
_flock = fcntl.flock


def _cpu() -> tuple[float, float, float | None]:
    """This process's CPU, its waited children's, and (with a cgroup of its own) every process it started."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = int((_cgroup[0] / "cpuacct.usage").read_text()) / 1e9 if _cgroup else None
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, tree


def _costs(before: tuple[float, float, float | None]) -> dict[str, float]:
    own, children, tree = _cpu()
    costs = {"cpu": own - before[0], "children_cpu": children - before[1]}
    return costs | ({"tree_cpu": tree - before[2]} if tree is not None and before[2] is not None else {})


def _own_cgroup(worker: str) -> None:
    """Move this process into a new cgroup under ``CGROUPS``: what it starts from now on is counted there."""
    if CGROUPS is None:
        return
    # An earlier run's groups, whose workers have ended: a worker cannot remove its own (its fork server lives
    # until the worker exits), so the next run does.
    for left in Path(CGROUPS).glob("tests-*-*"):
        if not Path(f"/proc/{left.name.rsplit('-', 1)[1]}").exists():
            with contextlib.suppress(OSError):  # a process of it still lives
                left.rmdir()
    group = Path(CGROUPS) / f"tests-{worker}-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "cgroup.procs").write_text(str(os.getpid()))
    _cgroup.append(group)


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
    if hasattr(config, "workerinput"):
        _own_cgroup(str(config.workerinput["workerid"]))
    else:
        Path(FOLDER).mkdir(parents=True, exist_ok=True)
        threading.Thread(target=_busy_cores, args=(Path(FOLDER) / "machine.txt",), daemon=True).start()
        if config.getoption("numprocesses", None) in (None, 0):  # no workers: the tests run here
            _own_cgroup("controller")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    started, before = time.time(), _cpu()
    yield
    _write(item.config, {"kind": "test", "id": item.nodeid, "start": started, "end": time.time()} | _costs(before))


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[None]:
    started, before = time.time(), _cpu()
    yield
    if fixturedef.scope != "function" and time.time() - started > 0.5:
        record = {"kind": "fixture", "id": fixturedef.argname, "start": started, "end": time.time()}
        _write(request.config, record | _costs(before))


def _line(worker: str, start: float, end: float, what: str) -> str:
    return f"{worker} {start:6.0f} {end:6.0f}  wall {end - start:6.1f}  {what}"


def _spent(record: dict[str, Any]) -> float:
    """Its CPU: the cgroup's where there was one, else the worker's and its waited children's."""
    return float(record["tree_cpu"] if "tree_cpu" in record else record["cpu"] + record["children_cpu"])


def summary(folder: Path) -> list[str]:
    """Each worker's xdist groups in the order it ran them (start and end in seconds from the first test, wall
    time, CPU: ``_spent``), then the fixtures and lock waits over a second, then (with cgroups) the 25 tests
    that cost most."""
    records = [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]
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
            spans[-1][2:] = [r["end"], spans[-1][3] + _spent(r), spans[-1][4] + 1]
        for group, start, end, cpu, count in spans:
            lines.append(_line(worker, start - first, end - first, f"CPU {cpu:6.1f}  {count:3d} tests  {group}"))
    others = sorted((r for r in records if r["kind"] != "test" and r["end"] - r["start"] > 1), key=lambda r: r["start"])
    for r in others:
        cpu = f"CPU {_spent(r):6.1f}" if r["kind"] == "fixture" else "waited"
        lines.append(
            _line(r["worker"], r["start"] - first, r["end"] - first, f"{cpu}  {r['kind']} {Path(r['id']).name}")
        )
    counted = sorted((r for r in records if r["kind"] == "test" and "tree_cpu" in r), key=_spent, reverse=True)
    lines += [f"{r['worker']} CPU {_spent(r):6.1f}  wall {r['end'] - r['start']:6.1f}  {r['id']}" for r in counted[:25]]
    return lines


if __name__ == "__main__":
    print("\n".join(summary(Path(sys.argv[1]))))
