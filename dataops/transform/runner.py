"""Running dbt: by hand (``dataops dbt``), in tests, and for the Dagster step, which reads its structured log.

Every door runs the same command line with the registry's vars and the platform's environment. dbt runs in
a subprocess: dbt-duckdb keeps the warehouse open in its process after a command, and a subprocess can be
stopped (Ctrl-C, a cancelled run) without leaving the caller's process holding the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.core.settings import DBT_PROJECT_DIR, Settings, engine, environ
from dataops.core.warehouse import Limits, connect
from dataops.transform import dbt_server
from dataops.transform.build_stamp import forget_build
from dataops.transform.dbt_child import JSON_LOG, WAIT_FOR_COMMAND
from dataops.transform.dbt_server import DbtProcess
from dataops.transform.project import (
    dbt_environment,
    dbt_executable,
    manifest_path,
    project_files,
    registry_seeds,
    registry_vars,
    through_dataops_dbt,
    window_environment,
)
from dataops.transform.spark import export_raw, load_built
from registry.loader import Registry, load_registry

PARTIAL_PARSE = "partial_parse.msgpack"
DBT_LOG = "dbt.log"  # dbt's log file's name in its --log-path
KEEP_DBT_RUNS = 30
KEEP_PARSES = 6  # parses kept per data directory and per checkout: one per recent registry version
DBT_COMMANDS = frozenset(
    {"build", "clean", "clone", "compile", "debug", "deps", "docs", "init", "list", "ls", "parse", "retry", "run"}
    | {"run-operation", "seed", "show", "snapshot", "source", "test"}
)
# Commands that never write the warehouse's tables; any other (or none recognised) may, so it forgets the build.
READ_ONLY_COMMANDS = frozenset({"clean", "compile", "debug", "deps", "docs", "list", "ls", "parse", "show", "test"})


@dataclass
class DbtResult:
    success: bool
    output: str
    results: list[dict[str, Any]]  # run_results.json: one entry per node run

    def statuses(self) -> dict[str, str]:
        return {r["unique_id"]: r["status"] for r in self.results}


def parse_key(registry: Registry) -> str:
    """What a parse is kept under besides the checkout: dbt reuses a parse only under the vars it was made
    with, and the vars follow the registry's version, so each version keeps its own (a proposal's build, then
    the adoption's and the next daily run's, or a roll back, each start from the parse made under theirs)."""
    return hashlib.sha256(f"{engine()}\n{registry_vars(registry)}".encode()).hexdigest()[:12]


def warm_parse(settings: Settings, project_dir: Path = DBT_PROJECT_DIR, registry: Registry | None = None) -> Path:
    """Where a data directory keeps its last parse of one checkout of the dbt project under one registry version.

    Keyed by the project's path: dbt reuses a parse whose files hash the same even when it was made in
    another checkout, and its seeds then point at that checkout's files (a moved or deleted one fails the
    run with "No files found that match the pattern").
    """
    version = parse_key(registry or load_registry())
    return settings.dbt_runs_dir / f"partial_parse-{_checkout_key(project_dir)}-{version}.msgpack"


def _checkout_key(project_dir: Path) -> str:
    return hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:12]


def recent_parse(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> Path | None:
    """The data directory's newest parse of this checkout under any registry version, else the checkout's
    last: what a waiting ``dataops-dbt`` reads the project's macros from (they are the same whatever the vars)."""
    mine = _modified(settings.dbt_runs_dir.glob(f"partial_parse-{_checkout_key(project_dir)}-*.msgpack"))
    if mine:
        return max(mine, key=mine.__getitem__)
    checkout = shared_parse(project_dir)
    return checkout if checkout.exists() else None


def _modified(paths: Iterable[Path]) -> dict[Path, float]:
    """Each path's modification time; one another process deletes meanwhile is left out."""
    times = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            times[path] = path.stat().st_mtime
    return times


def shared_parse(project_dir: Path = DBT_PROJECT_DIR, registry: Registry | None = None) -> Path:
    """The last parse any data directory made with this checkout of the project (under ``registry``'s vars,
    when given): where a data directory that has none of its own yet starts (docs/decisions/0073)."""
    if registry is None:
        return project_dir / "target" / PARTIAL_PARSE
    return project_dir / "target" / f"partial_parse-{parse_key(registry)}.msgpack"


def parse_to_start_from(settings: Settings, project_dir: Path, registry: Registry) -> Path | None:
    """The data directory's own parse under these vars, else the checkout's (``checkout_parse``)."""
    warm = warm_parse(settings, project_dir, registry)
    return warm if warm.exists() else checkout_parse(project_dir, registry)


def checkout_parse(project_dir: Path, registry: Registry) -> Path | None:
    """The checkout's parse under these vars, else its last (any vars: dbt checks them), else none."""
    candidates = (shared_parse(project_dir, registry), shared_parse(project_dir))
    return next((path for path in candidates if path.exists()), None)


def _keep_parse(parsed: Path, settings: Settings, project_dir: Path, registry: Registry) -> None:
    """A command's parse kept for the next ones: the data directory's, the checkout's under these vars and
    the checkout's last; a few versions each (a parse is about 1.5 MB)."""
    _copy_atomically(parsed, warm_parse(settings, project_dir, registry))
    _keep_newest(settings.dbt_runs_dir.glob("partial_parse-*.msgpack"), KEEP_PARSES)
    # for the next new data directory; a read-only checkout (a deployed image) keeps the parse it ships with
    with contextlib.suppress(OSError):
        shared_parse(project_dir).parent.mkdir(parents=True, exist_ok=True)
        _copy_atomically(parsed, shared_parse(project_dir, registry))
        if parsed != shared_parse(project_dir):  # a command in the shared target left it there already
            _copy_atomically(parsed, shared_parse(project_dir))
        _keep_newest(shared_parse(project_dir).parent.glob("partial_parse-*.msgpack"), KEEP_PARSES)


def _keep_newest(paths: Iterable[Path], keep: int) -> None:
    """Delete all but the ``keep`` newest; another process may be deleting the same files meanwhile."""
    times = _modified(paths)
    for old in sorted(times, key=times.__getitem__)[:-keep]:
        old.unlink(missing_ok=True)


def run_target(
    settings: Settings, run_id: str, project_dir: Path = DBT_PROJECT_DIR, registry: Registry | None = None
) -> Path:
    """The target folder of one Dagster run's dbt invocation, started from the last parse under its vars.

    Each data directory keeps its own last parses, one per checkout of the project and registry version
    (docs/decisions/0015); a data directory without one (a new one, or a copy) starts from the checkout's.
    dbt checks either before it reuses it: one made under another profile (other limits, the other engine)
    or other vars is parsed again in full.
    """
    target = settings.dbt_runs_dir / run_id
    target.mkdir(parents=True, exist_ok=True)
    start = parse_to_start_from(settings, project_dir, registry or load_registry())
    if start is not None and not (target / PARTIAL_PARSE).exists():
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: dbt parses the whole project
            shutil.copyfile(start, target / PARTIAL_PARSE)
    return target


def keep_run_target(
    settings: Settings,
    target: Path,
    keep: int = KEEP_DBT_RUNS,
    project_dir: Path = DBT_PROJECT_DIR,
    registry: Registry | None = None,
) -> None:
    """Keep the run's parse for the next run, and the artefacts of the last ``keep`` runs only (each run
    writes a few megabytes of compiled SQL and logs; the run's results stay in Dagster's event log)."""
    manifest = target / "manifest.json"
    if manifest.exists() and (target / "run_results.json").exists():  # dbt finished: the manifest is whole
        # the last build's manifest, for readers outside the run (see run_manifest)
        staged = settings.dbt_runs_dir / f".manifest.json.{os.getpid()}"
        shutil.copyfile(manifest, staged)
        os.replace(staged, settings.dbt_runs_dir / "manifest.json")
    parsed = target / PARTIAL_PARSE
    if parsed.exists():
        _keep_parse(parsed, settings, project_dir, registry or load_registry())
    runs = sorted((p for p in settings.dbt_runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep)]:
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def shared_target(
    settings: Settings, project_dir: Path = DBT_PROJECT_DIR, registry: Registry | None = None
) -> Iterator[Path]:
    """The project's ``target/`` for a dbt command run outside a Dagster run, holding this data directory's
    last parse under the command's vars while the command runs.

    Every data directory's commands by hand (and the tests' own) share the project's ``target/``, where dbt
    users look for its manifest and results; but a parse is valid only under the profile and vars it was made
    with, so the parse another data directory or version left there made dbt parse the whole project again.
    The parse to start from goes in first and the command's comes back out, as a Dagster run's does
    (``run_target``); dbt still checks the parse it finds before it reuses it.
    """
    registry = registry or load_registry()
    target = project_dir / "target"
    target.mkdir(parents=True, exist_ok=True)
    start = parse_to_start_from(settings, project_dir, registry)
    if start is not None and start != target / PARTIAL_PARSE:
        with contextlib.suppress(FileNotFoundError):
            _copy_atomically(start, target / PARTIAL_PARSE)
    yield target
    if (target / PARTIAL_PARSE).exists():
        settings.dbt_runs_dir.mkdir(parents=True, exist_ok=True)
        _keep_parse(target / PARTIAL_PARSE, settings, project_dir, registry)


def _copy_atomically(source: Path, destination: Path) -> None:
    """A reader of ``destination`` (another process's dbt) never sees half a file."""
    staged = destination.with_name(f".{destination.name}.{os.getpid()}")
    shutil.copyfile(source, staged)
    os.replace(staged, destination)


def run_manifest(settings: Settings, run_id: str | None) -> Path | None:
    """A dbt manifest no dbt command rewrites while it is read: the run's own (what its dbt step wrote to its
    target folder), else the copy the last Dagster build kept; None if neither exists (the project's
    ``target/manifest.json``, which every dbt command rewrites in place, is then the only one)."""
    candidates = [settings.dbt_runs_dir / run_id / "manifest.json"] if run_id else []
    candidates.append(settings.dbt_runs_dir / "manifest.json")
    return next((path for path in candidates if path.exists()), None)


def command_line(args: list[str], registry: Registry, target: Path | None = None) -> list[str]:
    """dbt, the given arguments, the project, and the registry's values."""
    line = [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    line += ["--vars", registry_vars(registry)]
    return [*line, "--target-path", str(target)] if target is not None else line


def working_directory(settings: Settings) -> Path | None:
    """Where a dbt subprocess runs: in the data directory, so that its profile names the warehouse relative to
    it ("."), the same in every data directory. dbt keys a parse on the profile's values, so a parse then holds
    in every data directory and every copy of one (docs/decisions/0073). None (the caller's directory, and the
    data directory's absolute path) while the data directory does not exist yet: a parse needs none."""
    return settings.data_dir if settings.data_dir.is_dir() else None


def process_environment(
    settings: Settings, limits: Limits | None = None, window: tuple[str, str] | None = None
) -> dict[str, str]:
    """A dbt subprocess's environment, to run in ``working_directory(settings)``."""
    env = dict(os.environ) | _dbt_values(settings, limits, window)
    return {name: value for name, value in env.items() if value is not None}


def _dbt_values(settings: Settings, limits: Limits | None, window: tuple[str, str] | None) -> dict[str, str | None]:
    """What dbt's environment sets over the caller's (None: unset), to run in ``working_directory(settings)``."""
    values: dict[str, str | None] = {"DATAOPS_WINDOW_START": None, "DATAOPS_WINDOW_END": None}
    values |= dbt_environment(settings, limits) | window_environment(*(window or (None, None)))
    if working_directory(settings) is not None:
        values["DATAOPS_DATA_DIR"] = "."  # the profile's warehouse, relative to the data directory dbt runs in
    return values


def _forget_if_writing(args: list[str], settings: Settings, limits: Limits | None) -> None:
    command = next((arg for arg in args if arg in DBT_COMMANDS), None)
    if command not in READ_ONLY_COMMANDS and settings.build_db.exists():
        with connect(settings.build_db, limits=limits) as conn:
            forget_build(conn)  # built by hand: the Dagster step must not take it for its own last build
        if engine() == "spark":
            export_raw(settings, limits)  # what Spark reads: the raw layer as it is now (dataops/transform/spark.py)


def run_dbt(
    args: list[str],
    settings: Settings,
    registry: Registry | None = None,
    window: tuple[str, str] | None = None,
    limits: Limits | None = None,
    in_process: bool = False,
    target: Path | None = None,
) -> DbtResult:
    """Run dbt to completion with the registry vars and the platform's environment.

    ``in_process`` (dbtRunner, then the adapter's connections are dropped) saves the start-up seconds where
    many small runs follow each other, as in tests; it changes the process's working directory for the
    command, so one thread at a time. ``target`` is dbt's target folder (the project's
    ``target/`` if None).
    """
    registry = registry or load_registry()
    _forget_if_writing(args, settings, limits)
    full = command_line(args, registry, target)
    with registry_seeds(registry), contextlib.ExitStack() as held:
        if target is None and "--target-path" not in args:  # dbt's target is the project's target/
            held.enter_context(shared_target(settings, registry=registry))
        if in_process and engine() == "duckdb":  # a local Spark would stay behind in this process
            success, output, results = _run_in_process(full[1:], settings, limits, window)
            if results is not None:
                return DbtResult(success=success, output=output, results=results)
        else:
            success, output = _run_to_end(full, process_environment(settings, limits, window), settings)
    results_path = (target or DBT_PROJECT_DIR / "target") / "run_results.json"
    results = json.loads(results_path.read_text())["results"] if results_path.exists() else []
    return DbtResult(success=success, output=output, results=results)


def _run_to_end(line: list[str], env: dict[str, str], settings: Settings) -> tuple[bool, str]:
    """dbt's command line run in a subprocess (forked from the dbt fork server where it is enabled): whether it
    succeeded, and what it printed."""
    cwd = working_directory(settings)
    if not (dbt_server.enabled() and through_dataops_dbt(line[0])):
        proc = subprocess.run(line, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        return proc.returncode == 0, proc.stdout + proc.stderr
    process = _forked(line, env, cwd)
    assert process.stdout is not None
    with process.stdout:
        try:
            output = process.stdout.read()
        except BaseException:  # a Ctrl-C, say: dbt ends with the caller's wait, as subprocess.run's would
            process.kill()
            process.wait()
            raise
    return process.wait() == 0, output


def _forked(line: list[str], env: dict[str, str], cwd: Path | None) -> DbtProcess:
    """``dataops-dbt`` forked from the dbt fork server and handed its command line at once."""
    waiting = WaitingDbt(dbt_server.start([line[0], WAIT_FOR_COMMAND], cwd))
    if not waiting.hand(line[1:], env, cwd):
        raise RuntimeError(f"dataops-dbt (pid {waiting.process.pid}) ended before its command")
    return waiting.process


def _run_in_process(
    args: list[str], settings: Settings, limits: Limits | None, window: tuple[str, str] | None
) -> tuple[bool, str, list[dict[str, Any]] | None]:
    """dbt in this process, in the directory and environment a subprocess would have: its profile then
    names the warehouse as every other invocation's does, so the parse they left holds (a profile naming the
    warehouse by its absolute path is another profile to dbt, which parses the whole project again).

    Also returns the nodes' results as ``run_results.json`` holds them, from dbt's result in memory (None for
    a command without any): a caller that reads them can pass ``--no-write-json``, which spares writing the
    manifest twice per command."""
    import gc

    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.artifacts.schemas.run import RunExecutionResult, RunResultsArtifact
    from dbt.cli.main import dbtRunner

    cwd = working_directory(settings)
    # What was alive before the command is none of dbt's: left out of the collector's scans while dbt runs, so
    # the full collection after it (which frees a warehouse handle caught in a cycle) and dbt's own passes walk
    # only the command's objects, not the caller's whole heap (a test worker's: about 0.5 CPU-s a command).
    gc.freeze()
    try:
        with environ(_dbt_values(settings, limits, window)), contextlib.chdir(cwd or Path.cwd()):
            result = dbtRunner().invoke(args)
    finally:  # release the warehouse file for the caller, and never hand its handle to the next directory's
        DuckDBConnectionManager.close_all_connections()
        gc.collect()
        gc.unfreeze()
    executed = result.result
    results = None
    if isinstance(executed, RunExecutionResult):
        artifact = RunResultsArtifact.from_execution_results(
            results=executed.results,
            elapsed_time=executed.elapsed_time,
            generated_at=executed.generated_at,
            args=executed.args,
        )
        results = artifact.to_dict(omit_none=False)["results"]
    return bool(result.success), str(result.exception or ""), results


def prepare_manifest(registry: Registry | None = None, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Make sure target/manifest.json exists, is newer than the project's files and was parsed for this
    engine (dbt parse if not): a model disabled on one engine is no asset there, and publishing waits for
    every asset it is given."""
    registry = registry or load_registry()
    manifest = manifest_path(project_dir)
    parsing = manifest.with_name(".parse.lock")  # one parse at a time: a reader never sees half a manifest
    with registry_seeds(registry, project_dir), parsing.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max(p.stat().st_mtime for p in project_files(project_dir))
        if manifest.exists() and manifest.stat().st_mtime >= newest and _parsed_for(manifest) == engine():
            return manifest
        # parsed aside, then swapped in: a process reading the manifest without the lock sees a whole one
        aside = manifest.with_name(f".parse-{os.getpid()}")
        aside.mkdir(exist_ok=True)
        start = checkout_parse(project_dir, registry)  # it has no data directory of its own
        if start is not None:
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: dbt parses the whole project
                shutil.copyfile(start, aside / PARTIAL_PARSE)
        try:
            result = run_dbt(["parse"], Settings.from_env(), registry, target=aside)
            if result.success:
                if (aside / PARTIAL_PARSE).exists():
                    _copy_atomically(aside / PARTIAL_PARSE, shared_parse(project_dir, registry))
                    os.replace(aside / PARTIAL_PARSE, manifest.parent / PARTIAL_PARSE)
                os.replace(aside / "manifest.json", manifest)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    if not result.success:
        raise RuntimeError(f"dbt parse failed:\n{result.output[-3000:]}")
    return manifest


def _parsed_for(manifest: Path) -> str | None:
    """The dbt adapter a manifest was parsed with (its target: duckdb or spark)."""
    try:
        adapter = json.loads(manifest.read_text())["metadata"]["adapter_type"]
    except (OSError, ValueError, KeyError):
        return None
    return str(adapter)


@dataclass
class DbtInvocation:
    """A dbt command running in a subprocess, read as dbt's structured (JSON) log while it runs.

    ``events()`` yields each log line as dbt writes it; ``result()`` waits and reads run_results.json;
    ``stop()`` interrupts dbt (SIGINT, as Ctrl-C would, then SIGKILL after ``grace`` seconds) so a cancelled
    or interrupted step never leaves dbt writing the warehouse behind it. ``load_back`` is set when dbt builds
    on Spark: ``result()`` then brings the tables it built into the build warehouse (docs/decisions/0048).
    """

    process: DbtProcess
    target: Path
    grace: float = 20.0
    prepared: bool = False  # run by a dataops-dbt started before the step (WaitingDbt)
    errors: list[str] = field(default_factory=list)
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the registry seeds, while dbt runs
    load_back: tuple[Settings, Limits | None] | None = None

    def events(self) -> Iterator[dict[str, Any]]:
        """dbt's log lines as it writes them. A thread drains dbt's output as it comes, so that a reader slower
        than dbt for a while (the Dagster step writes each node's events as it reads its line) never fills the
        pipe and stalls dbt's writes, and with them its build."""
        lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._drain, args=(lines,), name="dbt-log", daemon=True).start()
        while (line := self._next(lines)) is not None:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.errors.append(line.rstrip())  # not dbt's log: a crash's traceback, say
                continue
            if event.get("info", {}).get("level") == "error":
                self.errors.append(str(event["info"].get("msg", "")))
            yield event

    @staticmethod
    def _next(lines: queue.SimpleQueue[str | None]) -> str | None:
        """The next line, waiting in short spells: a wait without end would hold off a Ctrl-C (SIGINT) that
        the kernel hands to another thread until dbt's next line, and the step must stop dbt at once."""
        while True:
            with contextlib.suppress(queue.Empty):
                return lines.get(timeout=0.2)

    def _drain(self, lines: queue.SimpleQueue[str | None]) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                lines.put(line)
        finally:
            lines.put(None)

    def result(self) -> DbtResult:
        code = self.process.wait()
        self.held.close()
        path = self.target / "run_results.json"
        results = json.loads(path.read_text())["results"] if path.exists() else []
        if self.load_back is not None and (self.target / "manifest.json").exists():
            settings, limits = self.load_back
            load_built(settings, self.target, results, limits)
        return DbtResult(success=code == 0, output="\n".join(self.errors), results=results)

    def stop(self) -> None:
        if self.process.poll() is not None:
            self.held.close()
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.held.close()


@dataclass
class WaitingDbt:
    """``dataops-dbt`` started before its command is known: it imports dbt while other work goes on and waits
    for its command line on stdin (docs/decisions/0092). ``start_dbt`` hands it the command; ``end()`` ends
    it unused. It ends with the process that started it (the parent-death signal), and when its stdin closes.
    """

    process: DbtProcess

    def hand(self, line: list[str], env: dict[str, str], cwd: Path | None) -> bool:
        """Give it its command (``line`` without the executable); False when it is no longer there to take it
        (it died while it waited): the caller starts dbt afresh."""
        stdin = self.process.stdin
        if self.process.poll() is not None or stdin is None or stdin.closed:
            self.end()
            return False
        try:
            stdin.write(json.dumps({"args": line, "env": env, "cwd": str(cwd) if cwd else None}) + "\n")
            stdin.close()
        except OSError:  # it died since: a broken pipe
            self.end()
            return False
        return True

    def end(self, grace: float = 5.0) -> None:
        """End it without a command, at once: it has opened nothing yet (SIGTERM, then SIGKILL after ``grace``),
        rather than let it finish importing dbt to read the end of its stdin."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_waiting_dbt(settings: Settings) -> WaitingDbt | None:
    """A ``dataops-dbt`` that imports dbt now and runs the command ``start_dbt`` hands it later, in the
    directory dbt runs in (so a process left on a data directory is found by it). None where ``dataops-dbt``
    is not installed: plain ``dbt`` knows no waiting, and the step starts it when it needs it. It is given the
    last parse of the project to compile the macros' templates from while it waits (``recent_parse``)."""
    executable = dbt_executable()
    if not through_dataops_dbt(executable):
        return None
    parse = recent_parse(settings)
    line = [executable, WAIT_FOR_COMMAND, *([str(parse)] if parse else [])]
    cwd = working_directory(settings)
    if dbt_server.enabled():  # forked from the one that imported dbt (dataops/transform/dbt_server.py)
        return WaitingDbt(dbt_server.start(line, cwd))
    process = subprocess.Popen(
        line, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return WaitingDbt(process)


def start_dbt(
    args: list[str],
    settings: Settings,
    target: Path,
    registry: Registry | None = None,
    window: tuple[str, str] | None = None,
    limits: Limits | None = None,
    waiting: WaitingDbt | None = None,
) -> DbtInvocation:
    """Start dbt with its log as JSON lines on stdout; the caller reads ``events()`` then ``result()``.

    On Spark, dbt reads the raw layer exported as it is now, and what it builds comes back into the build
    warehouse when it ends, so that the gate, publishing and egress read this run's tables on either engine.
    ``waiting``, a ``dataops-dbt`` started earlier, runs the command if it is still there, else a new one does;
    if dbt cannot be started, it is ended here (the caller handed it over).
    """
    spark = engine() == "spark"
    held = contextlib.ExitStack()
    prepared = False
    try:
        registry = registry or load_registry()
        if spark:
            export_raw(settings, limits)  # what Spark reads: the raw layer as it is now (dataops/transform/spark.py)
        # its log file beside its other artefacts (dbt.log), not in the project's shared logs/ folder; written by
        # dataops-dbt at info level unless dbt's own file is asked for (DBT_LOG_LEVEL_FILE): docs/decisions/0097
        own = through_dataops_dbt(dbt_executable()) and "DBT_LOG_LEVEL_FILE" not in os.environ
        lines = [JSON_LOG, str((target / DBT_LOG).absolute())] if own else []
        line = command_line([*lines, "--log-format", "json", "--log-path", str(target), *args], registry, target)
        env = process_environment(settings, limits, window)
        cwd = working_directory(settings)
        held.enter_context(registry_seeds(registry))  # until dbt ends: result() or stop() lets go
        prepared = waiting is not None and waiting.hand(line[1:], env, cwd)
        process: DbtProcess
        if waiting is not None and prepared:
            process = waiting.process
        elif dbt_server.enabled() and through_dataops_dbt(line[0]):
            process = _forked(line, env, cwd)
        else:
            process = subprocess.Popen(
                line, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
    except BaseException:
        held.close()
        if waiting is not None and not prepared:
            waiting.end()
        raise
    load_back = (settings, limits) if spark else None
    return DbtInvocation(process, target, held=held, load_back=load_back, prepared=prepared)
