"""The CPU a command costs, its whole process tree included: `python -m tests.cpu_meter pytest -n 0 tests/spark`.

`time` and `/usr/bin/time` count only the children their command waited for. Spark's JVM, a Dagster run's
subprocesses and servers a test stops are nobody's waited child, so their CPU goes missing (the Spark module's
JVM is three quarters of its CPU). This marks the command's environment, which every descendant inherits, and
samples the CPU of every process carrying the mark until the command ends. A process that lives less than one
sampling interval may be missed; its parent's share is not. Wall time on a shared machine measures the other
users as much as the command: compare CPU seconds (docs/testing.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict

INTERVAL = 0.2
TICK = os.sysconf("SC_CLK_TCK")


def _marked(marker: bytes) -> dict[tuple[str, str], tuple[float, str]]:
    """(pid, start time) -> (CPU seconds so far, executable name) of every live process carrying ``marker``."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if marker not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                line = stat.read()
        except OSError:  # ended, or not ours to read
            continue
        name = line[line.index("(") + 1 : line.rindex(")")]
        fields = line[line.rindex(")") + 2 :].split()
        found[(pid, fields[19])] = ((int(fields[11]) + int(fields[12])) / TICK, name)
    return found


def main(command: list[str]) -> int:
    token = uuid.uuid4().hex
    marker = f"CPU_METER={token}".encode()
    started = time.monotonic()
    process = subprocess.Popen(command, env={**os.environ, "CPU_METER": token})
    seen: dict[tuple[str, str], tuple[float, str]] = {}
    while process.poll() is None:
        for key, (cpu, name) in _marked(marker).items():
            seen[key] = (max(cpu, seen.get(key, (0.0, name))[0]), name)
        time.sleep(INTERVAL)
    wall = time.monotonic() - started
    by_name: defaultdict[str, float] = defaultdict(float)
    for cpu, name in seen.values():
        by_name[name] += cpu
    load = os.getloadavg()
    print(f"cpu_meter: wall {wall:.1f} s, CPU {sum(by_name.values()):.1f} s, load {load[0]:.1f} {load[2]:.1f}")
    largest = sorted(by_name.items(), key=lambda item: -item[1])[:6]
    print("cpu_meter: by executable: " + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in largest))
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
