"""``dataops-dbt``: dbt, started so that it ends when the process that started it ends.

A Dagster step runs dbt as a child process. When that process is killed (``kill -9`` of ``dataops run``,
of a run worker), an ordinary child lives on, keeps building the warehouse for a run that is gone and holds
its lock, so the next run's steps fail on it. On Linux the kernel sends this child SIGTERM when its parent
dies (the parent-death signal, set here before ``dbt`` replaces this process); elsewhere it is plain dbt.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main() -> None:
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            sys.exit(128 + signal.SIGTERM)
    dbt = Path(sys.executable).with_name("dbt")
    os.execv(dbt, [str(dbt), *sys.argv[1:]])


if __name__ == "__main__":
    main()
