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

Started with ``--wait-for-command`` (by the build run, before its dbt step: docs/decisions/0092), it imports
dbt while the run's other steps work, then waits for its command: one line on stdin, the command line, the
environment and the directory it runs in. Its stdin closed with no line (the run needed no dbt, or ended, or
died) ends it at once; so does a Ctrl-C while it waits (the run that started it handles its own).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import time
from types import FrameType

from dataops.core.collector import collect_less_often

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WAIT_FOR_COMMAND = "--wait-for-command"  # the one argument of dataops-dbt's own, never dbt's
# dbt's command line and what a build imports beyond it (docs/decisions/0092)
PREPARED = ("dbt.cli.main", "dbt.task.build", "dbt.compilation", "dbt.parser.sql", "dbt_common.clients.agate_helper")


def main() -> None:
    _end_with_parent()
    collect_less_often()  # before dbt's imports, parse and run (dataops/core/collector.py)
    args = sys.argv[1:]
    if args == [WAIT_FOR_COMMAND]:
        args = wait_for_command()
    code = run_dbt(args)
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


def wait_for_command() -> list[str]:
    """dbt imported before its command is known, then the command read from stdin and the process made as
    the step would have started it: the step's environment, in the step's directory. Nothing to read: exit."""
    signal.signal(signal.SIGINT, _quit)
    prepare(os.environ.get("DATAOPS_ENGINE") or "duckdb")
    line = sys.stdin.readline()
    if not line:  # no command will come: nothing was started, nothing to leave
        os._exit(0)
    command = json.loads(line)
    os.environ.clear()
    os.environ.update(command["env"])
    time.tzset()
    if command.get("cwd"):
        os.chdir(command["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # dbt's own handling of a Ctrl-C, as before
    return [str(arg) for arg in command["args"]]


def prepare(engine: str) -> None:
    """What dbt would import for any build, and the engine's adapter (its plugin module): the command's own
    parse, profile and adapter instance need its arguments and environment, so they wait for them."""
    for module in (*PREPARED, f"dbt.adapters.{engine}"):
        with contextlib.suppress(ImportError):  # an adapter not installed: the command reports it as dbt does
            importlib.import_module(module)


def _quit(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


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
