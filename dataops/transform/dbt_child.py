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
died) ends it at once; so does a Ctrl-C while it waits (the run that started it handles its own). While it waits
it also builds the JSON schemas dbt checks a command's project and profile against, and compiles the templates
of the macros a build calls, read from the project's last parse (docs/decisions/0099).

Given ``--json-log FILE`` before dbt's command (the step does), it writes dbt's log itself: the info-level JSON
lines, made once, on stdout and in FILE, with dbt's own loggers off (docs/decisions/0097).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from dataops.core.collector import collect_less_often

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WAIT_FOR_COMMAND = "--wait-for-command"  # dataops-dbt's own arguments, never dbt's: this one alone,
JSON_LOG = "--json-log"  # and this one with its file, before dbt's command (docs/decisions/0097)
LOGGED_LEVELS = frozenset({"info", "warn", "error"})  # what dbt's log at its default level, info, holds
# dbt's command line and what a build imports beyond it (docs/decisions/0092)
PREPARED = ("dbt.cli.main", "dbt.task.build", "dbt.compilation", "dbt.parser.sql", "dbt_common.clients.agate_helper")


def main() -> None:
    _end_with_parent()
    collect_less_often()  # before dbt's imports, parse and run (dataops/core/collector.py)
    args = sys.argv[1:]
    if args[:1] == [WAIT_FOR_COMMAND] and len(args) <= 2:
        args = wait_for_command(args[1] if len(args) == 2 else None)
    code = run_dbt(args)
    if "pyspark" in sys.modules:  # a local Spark session stops in the interpreter's shutdown
        sys.exit(code)
    _exit(code)


def _exit(code: int) -> None:
    """Exit without the interpreter's shutdown, after what it runs first: the log handlers' flush,
    multiprocessing's release of the semaphores dbt made (else its resource tracker warns of them on the output
    the step reads)."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def forked(stdin: Any, stdout: Any, args: list[str], env: dict[str, str], cwd: str | None) -> None:
    """``main()`` in a process forked from the dbt fork server (dataops/transform/dbt_server.py), made as
    ``subprocess.Popen`` would have started it: ``stdin`` and ``stdout`` (its pipes' ends, as multiprocessing
    hands them over) its standard streams, stderr on stdout, the caller's environment and ``cwd``."""
    os.dup2(stdin.fileno(), 0)
    os.dup2(stdout.fileno(), 1)
    os.dup2(1, 2)
    stdin.close()
    stdout.close()
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own stream
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    _take(env, cwd)
    sys.argv = ["dataops-dbt", *args]
    try:
        main()
    except SystemExit as ended:  # a Spark session's process ends through the interpreter's exit: run it here
        _exit(exit_code(ended.code))


def _take(env: dict[str, str], cwd: str | None) -> None:
    """The caller's environment and working directory, as this process's own."""
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    if cwd:
        os.chdir(cwd)


def _end_with_parent() -> None:
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            sys.exit(128 + signal.SIGTERM)


def wait_for_command(parse: str | None = None) -> list[str]:
    """dbt imported before its command is known, then the command read from stdin and the process made as
    the step would have started it: the step's environment, in the step's directory. Nothing to read: exit.
    ``parse``, a saved parse of the project, gives the macros whose templates it compiles meanwhile."""
    signal.signal(signal.SIGINT, _quit)
    prepare(os.environ.get("DATAOPS_ENGINE") or "duckdb")
    if parse and not os.environ.get("DBT_MACRO_DEBUGGING"):  # dbt compiles for its debugger only once it knows
        warm_templates(parse, stop=lambda: _readable(sys.stdin))
    line = sys.stdin.readline()
    if not line:  # no command will come: nothing was started, nothing to leave
        os._exit(0)
    command = json.loads(line)
    _take(command["env"], command.get("cwd"))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # dbt's own handling of a Ctrl-C, as before
    return [str(arg) for arg in command["args"]]


def prepare(engine: str) -> None:
    """What dbt would import for any build, and the engine's adapter (its plugin module): the command's own
    parse, profile and adapter instance need its arguments and environment, so they wait for them."""
    for module in (*PREPARED, f"dbt.adapters.{engine}"):
        with contextlib.suppress(ImportError):  # an adapter not installed: the command reports it as dbt does
            importlib.import_module(module)
    warm_schemas(engine)


def warm_schemas(engine: str) -> None:
    """The JSON schemas dbt checks the project, its flags and the profile's credentials against, built while
    it waits: dbt builds each once per process and keeps it, about 0.2 CPU-s at the command's start."""
    with contextlib.suppress(Exception):  # only a warm-up: whatever is missing, the command builds itself
        from dbt.contracts.project import PackageConfig, Project, ProjectFlags

        plugin = importlib.import_module(f"dbt.adapters.{engine}").Plugin
        for schema in (Project, PackageConfig, ProjectFlags, plugin.credentials):
            schema.json_schema()


def warm_templates(parse: str, stop: Callable[[], bool] = lambda: False) -> int:
    """The Jinja templates of the macros a build can call, compiled while it waits; how many.

    dbt compiles a macro's template the first time a node calls it in a process and keeps it, keyed by its
    text (dbt_common's template cache): about 280 macros, 0.8 s of dbt's lock in a daily build at SF 10,
    spent by its threads between the nodes (docs/decisions/0099). The macros are those the project's nodes
    depend on, their materialisations', and what those call, as dbt's parse recorded them; the command's own
    parse checks the project as always, and a macro changed since is compiled again under its new text.
    It stops as soon as ``stop()`` says the command has come: dbt then compiles the rest as it needs them.
    """
    try:
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder
        from dbt_common.clients.jinja import template_cache

        with open(parse, "rb") as saved:  # read as dbt reads it (its dates are msgpack extension types)
            manifest = Manifest.from_msgpack(saved.read(), decoder=extended_mashumuro_decoder)
        wanted = reachable_macros(manifest)
    except Exception:  # only a warm-up (a parse pruned, unfinished or of another dbt): the command compiles them
        return 0
    compiled = 0
    for unique_id in wanted:
        if stop():
            break
        with contextlib.suppress(Exception):  # a macro dbt cannot compile fails the command, not the warm-up
            template_cache.get_node_template(manifest.macros[unique_id])
            compiled += 1
    return compiled


def _readable(stream: TextIO) -> bool:
    """Whether a line (or the end) has come on ``stream``, without waiting for it."""
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError):  # not a file select can watch: let the warm-up run to its end
        return False


def reachable_macros(manifest: Any) -> set[str]:
    """The macros the nodes depend on and the materialisations they use, and every macro those call."""
    materialized = {getattr(node.config, "materialized", None) for node in manifest.nodes.values()}
    starts = [m for node in manifest.nodes.values() for m in node.depends_on.macros]
    starts += [
        unique_id
        for unique_id, macro in manifest.macros.items()
        if any(macro.name.startswith(f"materialization_{kind}_") for kind in materialized if kind)
    ]
    seen: set[str] = set()
    while starts:
        unique_id = starts.pop()
        if unique_id not in seen and unique_id in manifest.macros:
            seen.add(unique_id)
            starts.extend(manifest.macros[unique_id].depends_on.macros)
    return seen


def _quit(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def run_dbt(args: list[str]) -> int:
    """dbt's command line, run in this process: its exit code. ``--json-log FILE`` first: dbt's log at info
    level as JSON lines on stdout and in FILE, written here (:class:`JsonLines`) instead of by dbt's loggers."""
    if args[:1] == [JSON_LOG] and len(args) > 1:
        with JsonLines(args[1]) as lines:
            return run_with_callback(args[2:], lines)
    from dbt.cli.main import cli

    try:
        cli.main(args=args, prog_name="dbt")
    except SystemExit as ended:
        return exit_code(ended.code)
    return 0


def run_with_callback(args: list[str], lines: JsonLines) -> int:
    """dbt with its loggers off and its events handed to ``lines``; the exit code dbt's command line gives."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner(callbacks=[lines]).invoke([*args, "--log-level", "none", "--log-level-file", "none"])
    if result.success:
        return 0
    return 1 if result.exception is None else 2  # 1: nodes failed; 2: dbt itself failed (already logged)


class JsonLines:
    """dbt's JSON log lines at info level, made only for the events that are kept.

    dbt's own JSON loggers make the line of every event before their level drops it: each query's debug event
    is serialised, then thrown away, by each of them (the step's stdout and the run's file): about a fifth of
    dbt's process in a daily build. Here an event below info costs nothing beyond its creation, and a kept
    one is serialised once, as dbt's loggers do (``msg_to_json``, secrets scrubbed), for both outputs.
    """

    def __init__(self, path: str) -> None:
        from dbt_common.events.functions import env_scrubber, msg_to_json

        self.path = path
        self.line = lambda msg: env_scrubber(msg_to_json(msg)) + "\n"  # as dbt's JSON logger makes it
        self.lock = threading.Lock()  # dbt's threads fire events concurrently

    def __enter__(self) -> JsonLines:
        self.file = open(self.path, "a", encoding="utf8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def __call__(self, msg: Any) -> None:
        if msg.info.level not in LOGGED_LEVELS:
            return
        line = self.line(msg)
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()  # the step reads each node's lines as it finishes
            self.file.write(line)
            self.file.flush()


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
