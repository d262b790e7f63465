"""``dataops-dbt``: dbt, started so that it ends when the process that started it ends, and ends at once.

A Dagster step runs dbt as a child process. When that process is killed (``kill -9`` of ``dataops run``,
of a run worker), an ordinary child lives on, keeps building the warehouse for a run that is gone and holds
its lock, so the next run's steps fail on it. On Linux the kernel sends this child SIGTERM when its parent
dies (the parent-death signal, set here before dbt runs in this process).

When dbt has finished (dbt-duckdb has closed the warehouse with its last connection, so DuckDB has
checkpointed it), the process flushes its logs and exits without the interpreter's own shutdown: freeing
every object of dbt's manifest and graph one by one took 0.2 s of every run after dbt's last line, with the
next step waiting (docs/decisions/0085). A process that ran Spark exits as usual: its local session and
catalog stop in the interpreter's shutdown.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main() -> None:
    _end_with_parent()
    code = run_dbt(sys.argv[1:])
    if "pyspark" in sys.modules:  # a local Spark session stops in the interpreter's shutdown
        sys.exit(code)
    # what the interpreter's exit runs first: the log handlers' flush, multiprocessing's release of the
    # semaphores dbt made (else its resource tracker warns of them on the output the step reads)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _end_with_parent() -> None:
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            sys.exit(128 + signal.SIGTERM)


def run_dbt(args: list[str]) -> int:
    """dbt's command line, run in this process: its exit code."""
    from dbt.cli.main import cli

    try:
        cli.main(args=args, prog_name="dbt")
    except SystemExit as ended:
        return exit_code(ended.code)
    return 0


def exit_code(code: object) -> int:
    """The process's exit code for what ``sys.exit`` was given, as the interpreter would make it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # a message: the interpreter prints it and exits with 1
    return 1


if __name__ == "__main__":
    main()
