"""Each data directory keeps its own warm dbt parse and a bounded history of dbt run artefacts; dbt logs
to its file at info level unless told otherwise."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from dataops.core.digest import table_digest
from dataops.core.settings import Settings
from dataops.governance.catalog import GOVERNANCE_DDL
from dataops.ingest import raw_digests
from dataops.ingest.pipeline import with_lineage
from dataops.ingest.raw_digests import forget, kept_digests
from dataops.transform.build_stamp import build_inputs, built_from, forget_build, record_build
from dataops.transform.project import dbt_environment
from dataops.transform.runner import (
    PARTIAL_PARSE,
    _keep_newest,
    keep_run_target,
    run_dbt,
    run_target,
    shared_target,
    start_dbt,
    warm_parse,
)
from quality.contracts import CONTRACTS
from registry.loader import Registry, load_registry


def test_a_run_starts_from_the_last_runs_parse_and_leaves_its_own(tmp_path: Path) -> None:
    settings, project = Settings.from_env(tmp_path / "data"), tmp_path / "transforms"
    first = run_target(settings, "run-1", project)
    assert not (first / PARTIAL_PARSE).exists()  # nothing parsed yet with this checkout
    (first / PARTIAL_PARSE).write_bytes(b"parse of run 1")
    keep_run_target(settings, first, project_dir=project)

    second = run_target(settings, "run-2", project)
    assert (second / PARTIAL_PARSE).read_bytes() == b"parse of run 1"
    (second / PARTIAL_PARSE).write_bytes(b"parse of run 2")
    keep_run_target(settings, second, project_dir=project)
    assert warm_parse(settings, project).read_bytes() == b"parse of run 2"
    assert not [p for p in settings.dbt_runs_dir.iterdir() if p.name.startswith(".")]  # no staged leftovers

    other = Settings.from_env(tmp_path / "other")  # a new data directory starts from the checkout's last parse
    assert (run_target(other, "run-1", project) / PARTIAL_PARSE).read_bytes() == b"parse of run 2"


def test_a_checkout_that_cannot_be_written_keeps_its_parse_and_the_run_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, project = Settings.from_env(tmp_path / "data"), tmp_path / "transforms"
    (project / "target").mkdir(parents=True)
    (project / "target" / PARTIAL_PARSE).write_bytes(b"parse shipped with the image")
    replace = os.replace

    def read_only_checkout(source: Path, destination: Path) -> None:
        if Path(destination).is_relative_to(project):
            raise PermissionError(13, "Read-only file system", str(destination))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", read_only_checkout)
    target = run_target(settings, "run-1", project)
    (target / PARTIAL_PARSE).write_bytes(b"parse of run 1")
    keep_run_target(settings, target, project_dir=project)  # the build's success is not lost to the checkout
    assert warm_parse(settings, project).read_bytes() == b"parse of run 1"
    assert (project / "target" / PARTIAL_PARSE).read_bytes() == b"parse shipped with the image"


def test_a_new_data_directory_parses_partially_from_another_ones_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt runs in the data directory and its profile names the warehouse from there: its profile, which dbt's
    partial parsing checks, is the same in every data directory, so a new one need not parse the whole project
    (docs/decisions/0073). dbt's own log says which parse it made."""
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # dbt logs its partial parse at debug level

    def parse(name: str) -> str:
        settings = Settings(tmp_path / name)
        settings.data_dir.mkdir()
        target = run_target(settings, "run-1")
        dbt = start_dbt(["parse"], settings, target)
        for _ in dbt.events():
            pass
        assert dbt.result().success
        keep_run_target(settings, target)
        assert sorted(p.name for p in settings.data_dir.iterdir()) == ["dbt_runs"]  # nothing else written there
        return (target / "dbt.log").read_text()

    parse("first")  # whatever parse the checkout held before, this one is the checkout's last
    log = parse("second")
    assert "Unable to do partial parsing" not in log, log[-2000:]
    assert "Partial parsing enabled" in log
    # dbt run in this process (as the tests run it) has the same profile: the data directory's parse holds
    logs = tmp_path / "in-process-logs"
    assert run_dbt(["parse", "--log-path", str(logs)], Settings(tmp_path / "second"), in_process=True).success
    log = (logs / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in log, log[-2000:]
    assert "Partial parsing enabled" in log


def test_the_next_days_window_in_another_data_directory_parses_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window changes every day and each data directory has its own path: dbt reads both only when it
    executes, so the parse the last run left is reused whole (docs/decisions/0099). Read while parsing, dbt
    would record them and parse every model that reads them again (the lead models, the product's)."""
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # dbt logs its partial parse at debug level

    def parse(name: str, day: str) -> str:
        settings = Settings(tmp_path / name)
        settings.data_dir.mkdir(exist_ok=True)
        target = run_target(settings, f"run-{day}")
        dbt = start_dbt(["parse"], settings, target, window=(day, day))
        for _ in dbt.events():
            pass
        assert dbt.result().success
        keep_run_target(settings, target)
        return (target / "dbt.log").read_text()

    parse("first", "2026-03-01")
    log = parse("second", "2026-03-02")
    assert "Partial parsing enabled: 0 files deleted, 0 files added, 0 files changed." in log, log[-3000:]
    assert "Partial parsing: updated file" not in log, log[-3000:]


def test_each_registry_version_starts_from_the_parse_made_under_it(tmp_path: Path) -> None:
    """dbt parses the whole project again under other vars, and the vars follow the registry's version: a
    proposal's build, the daily runs after its adoption and a roll back each start from the parse made under
    their own version, here or in another data directory, not from whichever version parsed last."""
    adopted = load_registry()
    proposed = dataclasses.replace(adopted, version="proposed", mql_score_threshold=adopted.mql_score_threshold + 1)
    project = tmp_path / "transforms"
    here, aside = Settings.from_env(tmp_path / "data"), Settings.from_env(tmp_path / "proposal")

    def run(settings: Settings, registry: Registry, parsed: bytes) -> bytes:
        target = run_target(settings, f"run-{len(list(tmp_path.rglob('run-*')))}", project, registry)
        started = (target / PARTIAL_PARSE).read_bytes() if (target / PARTIAL_PARSE).exists() else b""
        (target / PARTIAL_PARSE).write_bytes(parsed)
        keep_run_target(settings, target, project_dir=project, registry=registry)
        return started

    assert run(here, adopted, b"adopted") == b""
    assert run(aside, proposed, b"proposed") == b"adopted"  # the checkout's last: dbt finds other vars in it
    assert run(here, proposed, b"proposed, here") == b"proposed"  # the adoption's run: the proposal's parse
    assert run(here, adopted, b"adopted again") == b"adopted"  # the roll back: this data directory's own
    with shared_target(Settings.from_env(tmp_path / "new"), project, proposed) as target:
        assert (target / PARTIAL_PARSE).read_bytes() == b"proposed, here"


def test_the_newest_parses_are_kept_while_another_process_prunes_the_same_ones(tmp_path: Path) -> None:
    parses = [tmp_path / f"partial_parse-{n}.msgpack" for n in range(4)]
    for age, path in enumerate(parses):
        path.write_bytes(b"parse")
        os.utime(path, (age, age))
    gone = tmp_path / "partial_parse-pruned.msgpack"  # listed, then deleted by another process before its time
    _keep_newest([gone, *parses], keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial_parse-2.msgpack", "partial_parse-3.msgpack"]


def test_a_parse_made_in_another_checkout_of_the_project_is_not_reused(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path / "data")
    here, moved = tmp_path / "checkout" / "transforms", tmp_path / "moved" / "transforms"
    first = run_target(settings, "run-1", here)
    (first / PARTIAL_PARSE).write_bytes(b"parse whose seeds point into the first checkout")
    keep_run_target(settings, first, project_dir=here)

    elsewhere = run_target(settings, "run-2", moved)
    assert not (elsewhere / PARTIAL_PARSE).exists()  # dbt parses afresh instead of reading the old paths
    (elsewhere / PARTIAL_PARSE).write_bytes(b"parse of the moved checkout")
    keep_run_target(settings, elsewhere, project_dir=moved)
    assert (run_target(settings, "run-3", here) / PARTIAL_PARSE).read_bytes().endswith(b"first checkout")


def test_only_the_last_runs_artefacts_are_kept(tmp_path: Path) -> None:
    settings = Settings.from_env(tmp_path)
    for number in range(6):
        target = run_target(settings, f"run-{number}")
        (target / "run_results.json").write_text("{}")
        os.utime(target, (1_000_000 + number, 1_000_000 + number))  # distinct ages, oldest first
    keep_run_target(settings, target, keep=3)
    kept = sorted(p.name for p in settings.dbt_runs_dir.iterdir() if p.is_dir())
    assert kept == ["run-3", "run-4", "run-5"]
    os.utime(target, (1, 1))  # the current run is never pruned, even when its folder looks oldest
    keep_run_target(settings, target, keep=1)
    assert (target / "run_results.json").exists()


def test_dbt_logs_to_its_file_at_info_level_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(tmp_path)
    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)
    assert dbt_environment(settings)["DBT_LOG_LEVEL_FILE"] == "info"
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # dbt's own variable, for a closer look
    assert dbt_environment(settings)["DBT_LOG_LEVEL_FILE"] == "debug"


def _project(root: Path) -> Path:
    project = root / "transforms"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: t\n")
    (project / "models" / "stg_erp__customers.sql").write_text("select * from raw.erp__customers\n")
    return project


def _warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute("create schema raw")
    conn.execute("""
        create table raw.erp__customers as
        select * from (values ('C-1', 'Acme', 'r1', '2025-01-05 10:00'::timestamptz, 'part-1.parquet', '2025-01-05'),
                              ('C-1', 'Acme', 'r1', '2025-01-05 10:00'::timestamptz, 'part-1.parquet', '2025-01-05'))
            as t(customer_no, customer_name, _run_id, _extracted_at, _source, _partition)
    """)
    _land_account(conn, name="Acme", mrr=2333.41, run_id="r1")
    return conn


def _land_account(conn: duckdb.DuckDBPyConnection, name: str, mrr: float, run_id: str) -> None:
    """The CRM account as ingestion loads it, lineage and record hash included."""
    account = pl.DataFrame({"Id": ["A-1"], "Name": [name], "Enterprise_MRR_USD__c": [mrr]})
    written_back = CONTRACTS["crm.accounts"].written_back
    landed = with_lineage(
        account, "crm", dt.date(2025, 1, 5), dt.datetime.now(dt.UTC), run_id, "crm:accounts", written_back
    )
    conn.register("landed", landed)
    _by_hand(conn, "create or replace table raw.crm__accounts as select * from landed")
    conn.unregister("landed")


def _by_hand(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raw rows written as no load writes them (in place, the count kept): the kept digests forgotten, as such
    a writer must (docs/decisions/0075), so that the build scans what changed."""
    conn.execute(sql)
    forget(conn)


WINDOW = ("2025-01-05", "2025-01-05")


def test_the_build_inputs_ignore_what_a_rerun_changes_and_see_everything_else(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with _warehouse(tmp_path / "build.duckdb") as conn:
        first = build_inputs(conn, WINDOW, '{"a": 1}', project)
        _by_hand(
            conn, "update raw.erp__customers set _run_id = 'r2', _extracted_at = now(), _source = 'part-2.parquet'"
        )
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) == first  # a re-run re-extracted the same rows
        _land_account(conn, name="Acme", mrr=2330.95, run_id="r2")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) == first  # ... and what the write-back set since
        _land_account(conn, name="Acme AG", mrr=2330.95, run_id="r3")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) != first
        _land_account(conn, name="Acme", mrr=2330.95, run_id="r4")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) == first
        conn.execute("alter table raw.erp__customers rename column customer_name to customer_legal_name")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) != first  # same values, another column
        conn.execute("alter table raw.erp__customers rename column customer_legal_name to customer_name")

        assert build_inputs(conn, ("2025-01-05", "2025-01-06"), '{"a": 1}', project) != first
        assert build_inputs(conn, WINDOW, '{"a": 2}', project) != first  # the registry's vars
        _by_hand(conn, "update raw.erp__customers set customer_name = 'Acme Corp'")  # both copies: an XOR would cancel
        renamed = build_inputs(conn, WINDOW, '{"a": 1}', project)
        assert renamed != first
        _by_hand(conn, "update raw.erp__customers set _partition = '2025-01-06'")  # a row the models read moved day
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) != renamed
        moved = build_inputs(conn, WINDOW, '{"a": 1}', project)
        (project / "models" / "stg_erp__customers.sql").write_text("select 1\n")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) != moved
        edited = build_inputs(conn, WINDOW, '{"a": 1}', project)
        conn.execute(GOVERNANCE_DDL)  # the first publish creates the (empty) archive log: nothing a build reads
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) == edited
        conn.execute("insert into governance.archive_log values ('marts.fct_invoices', '2024-01', 'x', 3, now(), null)")
        assert build_inputs(conn, WINDOW, '{"a": 1}', project) != edited  # archiving deleted rows from a mart
        archived = build_inputs(conn, WINDOW, '{"a": 1}', project)
        version = ["raw/product/events/date=2025-01-05/part-1.parquet"]
        assert build_inputs(conn, WINDOW, '{"a": 1}', project, lake=version) != archived  # events landed
        newer = ["raw/product/events/date=2025-01-05/part-2.parquet"]
        assert build_inputs(conn, WINDOW, '{"a": 1}', project, lake=newer) != build_inputs(
            conn, WINDOW, '{"a": 1}', project, lake=version
        )  # late events: a new version of the date


def test_a_build_reads_a_raw_tables_kept_digest_while_it_matches_the_table_and_scans_it_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No load wrote these tables: the first build scans them and keeps their digests for the next."""
    project = _project(tmp_path)

    def inputs() -> str:
        return build_inputs(conn, WINDOW, '{"a": 1}', project)

    def scanned() -> str:
        """The build inputs as a scan of every raw table finds them (what a build read before decision 0075)."""
        forget(conn)
        found = inputs()
        assert set(kept_digests(conn)) == {"erp__customers", "crm__accounts"}  # ... and kept again
        return found

    def corrupt(update: str) -> None:
        conn.execute(f"update pipeline.raw_digests set {update} where table_name = 'erp__customers'")

    with _warehouse(tmp_path / "build.duckdb") as conn:
        first = inputs()
        kept = kept_digests(conn)
        assert (kept["erp__customers"].rows, kept["crm__accounts"].rows) == (2, 1)
        assert inputs() == first
        corrupt("hash_sum = hash_sum + 1")
        assert inputs() != first  # read, not scanned
        corrupt("hash_sum = hash_sum - 1")
        # a row inserted by a writer that keeps no digest: its count tells, the table is scanned and kept again
        conn.execute("insert into raw.erp__customers select * replace ('C-2' as customer_no) from raw.erp__customers")
        inserted = inputs()
        assert inserted != first and kept_digests(conn)["erp__customers"].rows == 4
        corrupt("hash_sum = hash_sum + 1")
        assert inputs() != inserted  # the digest kept by the build above is read
        assert scanned() == inserted
        conn.execute("alter table raw.erp__customers add column region varchar")  # a column, every row null
        added = inputs()
        assert added != inserted and scanned() == added
        corrupt("engine = '1.4.0', hash_sum = hash_sum + 1")  # summed by another DuckDB's hash
        assert inputs() == added

        # a load of the table commits while a build scans it: the build keeps the table as it is after the load
        def load_meanwhile(*args: Any) -> tuple[int, str | None]:
            found = table_digest(*args)
            with conn.cursor() as load:
                load.execute("update pipeline.raw_digests set rows = rows where table_name = 'erp__customers'")
            return found

        corrupt("rows = 0")
        monkeypatch.setattr(raw_digests, "table_digest", load_meanwhile)
        assert inputs() == added


def test_the_warehouse_keeps_only_its_last_complete_build(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "build.duckdb")) as conn:
        assert built_from(conn) is None
        record_build(conn, "digest-1", WINDOW, "run-1", dt.datetime.now(dt.UTC))
        record_build(conn, "digest-2", WINDOW, "run-2", dt.datetime.now(dt.UTC))
        assert built_from(conn) == ("digest-2", "run-2")
        forget_build(conn)  # dbt is about to write: a build that fails half-way leaves no stamp
        assert built_from(conn) is None


def test_dbt_run_by_hand_forgets_the_last_build_and_a_parse_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dataops dbt run`` may build with other code or vars: the next Dagster run must not skip its build."""
    settings = Settings.from_env(tmp_path)
    settings.build_db.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.build_db)) as conn:
        record_build(conn, "digest-1", WINDOW, "run-1", dt.datetime.now(dt.UTC))
    ran: list[list[str]] = []

    def dbt(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    from dataops.transform import dbt_server

    monkeypatch.setattr(dbt_server, "_context", None)  # dbt started as a program, which is faked here
    monkeypatch.setattr(subprocess, "run", dbt)
    run_dbt(["parse"], settings)
    run_dbt(["--log-level", "debug", "test"], settings)
    with duckdb.connect(str(settings.build_db)) as conn:
        assert built_from(conn) == ("digest-1", "run-1")
    run_dbt(["--debug", "run", "--select", "fct_leads"], settings)  # the command after dbt's global flags
    with duckdb.connect(str(settings.build_db)) as conn:
        assert built_from(conn) is None
    assert len(ran) == 3


def test_a_build_under_another_registry_version_waits_for_the_builds_reading_the_seeds(tmp_path: Path) -> None:
    """dbt reads the registry seeds from the project folder all processes share: a proposal's build under
    another version rewrote them under a running build, which then published the other version's labels."""
    import dataclasses
    import threading

    from dataops.transform.project import registry_seeds
    from registry.loader import load_registry

    adopted = load_registry()
    proposed = dataclasses.replace(adopted, version="v-proposed")
    seed = tmp_path / "seeds" / "registry" / "registry_kpis.csv"
    entered = threading.Event()

    def propose() -> None:
        with registry_seeds(proposed, tmp_path):
            entered.set()

    with registry_seeds(adopted, tmp_path):
        proposal = threading.Thread(target=propose)
        proposal.start()
        assert not entered.wait(1.0)  # the proposal waits for the running build
        assert "v-proposed" not in seed.read_text()
    proposal.join(timeout=60)
    assert entered.is_set()
    assert "v-proposed" in seed.read_text()
    with registry_seeds(adopted, tmp_path):  # and the next build gets its own version back
        assert "v-proposed" not in seed.read_text()


def test_the_build_inputs_read_the_builds_own_registry_seeds_not_another_versions(tmp_path: Path) -> None:
    """The project folder's seeds are shared: a proposal's build under another version may have written its
    own there. The digest of an unchanged re-run must not change with them (dbt would rebuild: 0020)."""
    import dataclasses

    from dataops.transform.build_stamp import registry_build_inputs
    from dataops.transform.project import write_registry_seeds
    from registry.loader import load_registry

    adopted = load_registry()
    proposed = dataclasses.replace(adopted, version="v-proposed")
    project = _project(tmp_path)
    with _warehouse(tmp_path / "build.duckdb") as conn:
        first = registry_build_inputs(conn, WINDOW, adopted, project)
        write_registry_seeds(proposed, project)  # another process's build under another version
        assert registry_build_inputs(conn, WINDOW, adopted, project) == first
        assert registry_build_inputs(conn, WINDOW, proposed, project) != first


def test_a_command_by_hand_starts_from_its_own_data_directorys_parse(tmp_path: Path) -> None:
    """The project's target/ is every data directory's, but a parse holds only under the profile (the data
    directory) it was made with: a command finds there its data directory's last parse, not another's."""
    project = tmp_path / "checkout"
    first, second = Settings(tmp_path / "first"), Settings(tmp_path / "second")

    def dbt(settings: Settings) -> bytes | None:
        """What a dbt command does with its target: reads the parse it finds there, leaves its own."""
        with shared_target(settings, project) as target:
            parse = target / PARTIAL_PARSE
            found = parse.read_bytes() if parse.exists() else None
            parse.write_bytes(f"parse for {settings.data_dir.name}".encode())
        return found

    assert dbt(first) is None
    assert dbt(second) == b"parse for first"  # none of its own yet: dbt checks this one, then parses it all
    assert dbt(first) == b"parse for first"
    assert dbt(second) == b"parse for second"
    assert warm_parse(first, project).read_bytes() == b"parse for first"


def test_a_ctrl_c_reaches_the_step_while_dbt_is_quiet_and_dbt_is_stopped(tmp_path: Path) -> None:
    """The step reads dbt's log through a thread that drains it (docs/decisions/0080); an interrupt must still
    reach the step while dbt writes nothing, not when dbt next writes a line."""
    import sys
    import threading

    from dataops.transform.runner import DbtInvocation

    later = tmp_path / "next-line"  # a long silent node, then the next line
    quiet = f"import pathlib, time; print('{{}}', flush=True); time.sleep(20); pathlib.Path({str(later)!r}).touch()"
    process = subprocess.Popen(
        [sys.executable, "-c", quiet + "; print('{}', flush=True); time.sleep(20)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dbt = DbtInvocation(process, tmp_path, grace=5)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in dbt.events():
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C once dbt ran
        assert not later.exists()  # the step had it before dbt's next line
    finally:
        dbt.stop()
    assert process.poll() is not None


def test_dataops_dbt_runs_dbt_in_its_own_process_and_ends_it_at_once_with_dbts_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dbt runs in ``dataops-dbt``'s process (no exec of another), which then runs what the interpreter's exit
    runs first and exits at once with dbt's code (docs/decisions/0085)."""
    import atexit
    import sys

    from dataops.transform import dbt_child

    steps: list[str] = []

    class Exited(Exception):
        pass

    def exit_now(code: int) -> None:
        steps.append(f"exit {code}")
        raise Exited

    def exec_dbt(*args: Any) -> None:
        raise AssertionError("dbt replaced dataops-dbt's process")

    monkeypatch.setattr(dbt_child, "_end_with_parent", lambda: None)  # not this test process's parent
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: steps.append("exit functions"))
    monkeypatch.setattr(os, "execv", exec_dbt)
    monkeypatch.setattr(os, "_exit", exit_now)
    for args, code in ((["--version"], 0), (["no-such-command"], 2)):  # a usage error: click's code 2
        monkeypatch.setattr(sys, "argv", ["dataops-dbt", *args])
        with pytest.raises(Exited):
            dbt_child.main()
        assert steps == ["exit functions", f"exit {code}"]
        steps.clear()
    assert [dbt_child.exit_code(c) for c in (None, 3, "a message")] == [0, 3, 1]


def test_dbt_leaves_the_warehouse_checkpointed_and_its_log_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dataops-dbt`` exits without the interpreter's shutdown (docs/decisions/0085), after dbt-duckdb closed
    the warehouse with its last connection: what dbt wrote is in the warehouse file, no write-ahead log is left
    for the next step to replay, and dbt's log is whole. dbt runs 4 threads on two cores unless
    DATAOPS_DBT_THREADS says otherwise (docs/decisions/0085)."""
    monkeypatch.delenv("DATAOPS_DBT_THREADS", raising=False)
    settings = Settings.from_env(tmp_path)
    settings.build_db.parent.mkdir(parents=True)
    result = run_dbt(["seed", "--select", "registry_kpis"], settings)
    assert result.success, result.output[-2000:]
    assert [p.name for p in settings.build_db.parent.iterdir()] == [settings.build_db.name]  # no .wal
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        (rows,) = conn.execute("select count(*) from reference.registry_kpis").fetchone() or (0,)
    assert rows > 0
    assert "Completed successfully" in result.output
    assert "Concurrency: 4 threads" in result.output


@pytest.fixture(params=["forked", "started"])
def dbt_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How this test process starts ``dataops-dbt``: forked from the dbt fork server, as the suite's processes
    do (tests/conftest.py), or started as a new program, as the platform's command-line processes do."""
    from dataops.transform import dbt_server

    if request.param == "started":
        monkeypatch.setattr(dbt_server, "_context", None)
    assert dbt_server.enabled() == (request.param == "forked")
    return str(request.param)


def test_a_dbt_started_before_its_command_runs_it_as_the_step_hands_it_and_a_dead_one_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dbt_processes: str
) -> None:
    """The build run starts ``dataops-dbt`` before its dbt step, to import dbt while the loads run; the step
    hands it its command, environment and directory, and starts a new one if the waiting one died
    (docs/decisions/0092). Either way it is started (``dbt_processes``)."""
    from dataops.transform.runner import start_waiting_dbt

    settings = Settings(tmp_path / "data")
    settings.data_dir.mkdir()
    args = ["ls", "--select", "dim_dates", "--output", "name"]

    def listed(dbt: Any) -> list[str]:
        lines = [str(e.get("info", {}).get("msg", "")) for e in dbt.events()]
        assert dbt.result().success, dbt.errors
        return [line for line in lines if line == "dim_dates"]

    waiting = start_waiting_dbt(settings)
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # set after it started: only the handed environment has it
    target = run_target(settings, "run-1")
    dbt = start_dbt(args, settings, target, waiting=waiting)
    assert dbt.prepared and dbt.process is waiting.process
    assert listed(dbt) == ["dim_dates"]
    logged = [json.loads(line)["info"] for line in (target / "dbt.log").read_text().splitlines()]
    assert {entry["pid"] for entry in logged} == {waiting.process.pid}
    assert "debug" in {entry["level"] for entry in logged}  # dbt ran in the step's environment
    keep_run_target(settings, target)

    dead = start_waiting_dbt(settings)
    dead.process.kill()
    dead.process.wait()
    dbt = start_dbt(args, settings, run_target(settings, "run-2"), waiting=dead)
    assert not dbt.prepared and dbt.process.pid != dead.process.pid
    assert listed(dbt) == ["dim_dates"]
    assert run_dbt(["ls", "--select", "dim_dates"], settings, target=run_target(settings, "run-3")).success


def test_a_process_that_enabled_the_dbt_server_forks_its_dbt_processes_from_one_that_imported_dbt(
    tmp_path: Path,
) -> None:
    """Its ``dataops-dbt`` processes are children of the one fork server (docs/decisions/0107), and share its
    dbt: the engine's native library is mapped at the same address in each as in the server, which it is only
    when inherited through ``fork`` (a program that imports it maps it where its own start put it)."""
    from dataops.transform.runner import start_waiting_dbt

    settings = Settings(tmp_path)
    first, second = start_waiting_dbt(settings), start_waiting_dbt(settings)
    try:
        server = {_parent(first.process.pid), _parent(second.process.pid)}
        assert len(server) == 1 and server != {os.getpid()}
        [server_pid] = server
        assert b"forkserver" in Path(f"/proc/{server_pid}/cmdline").read_bytes()
        native = {_duckdb_mapping(pid) for pid in (server_pid, first.process.pid, second.process.pid)}
        assert len(native) == 1 and None not in native, native
    finally:
        first.end()
        second.end()
    assert first.process.returncode == second.process.returncode == -signal.SIGTERM


def test_a_forked_dbt_is_stopped_and_waited_for_as_a_started_one_is(tmp_path: Path) -> None:
    """The step's Ctrl-C path (``DbtInvocation.stop``: SIGINT, a wait with its grace, then SIGKILL) works on a
    forked ``dataops-dbt``: one still waiting for its command ends on the SIGINT at once (128 + SIGINT), and a
    wait that runs out raises ``subprocess.TimeoutExpired`` as ``Popen``'s does."""
    import time

    from dataops.transform.runner import DbtInvocation, start_waiting_dbt

    waiting = start_waiting_dbt(Settings(tmp_path))
    assert waiting is not None
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.process.wait(timeout=0.1)
    deadline = time.monotonic() + 60  # until it reads its stdin: a Ctrl-C before is dbt's import's to handle
    while "pipe" not in Path(f"/proc/{waiting.process.pid}/wchan").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting.process.poll() is None
    DbtInvocation(waiting.process, tmp_path, grace=20).stop()
    assert waiting.process.returncode == 128 + signal.SIGINT
    waiting.process.kill()  # ended: nothing is sent to a pid that may be another process's now


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _duckdb_mapping(pid: int) -> str | None:
    """Where DuckDB's native library starts in the process's memory (None: not loaded)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if "/_duckdb." in line:
            return line.split("-", 1)[0]
    return None


def test_the_steps_dbt_logs_at_info_level_once_and_makes_no_line_it_does_not_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's ``dataops-dbt`` writes dbt's log itself (docs/decisions/0097): the lines dbt's JSON logger
    would write at info level, on stdout for the step and in the run's ``dbt.log``, and no event below info is
    serialised (dbt's own loggers made a line of every query's event, then dropped it). Exit codes as dbt's."""
    from dbt_common.events import functions

    from dataops.core.settings import environ
    from dataops.transform import dbt_child
    from dataops.transform.runner import DBT_LOG, command_line, process_environment, working_directory

    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)
    settings = Settings(tmp_path / "data")
    settings.data_dir.mkdir()
    args = ["ls", "--select", "dim_dates", "--output", "name"]
    target = run_target(settings, "run-1")
    dbt = start_dbt(args, settings, target)  # dataops-dbt, as the step starts it
    printed = list(dbt.events())
    assert dbt.result().success, dbt.errors
    logged = [json.loads(line) for line in (target / DBT_LOG).read_text().splitlines()]
    assert printed == logged and {event["info"]["pid"] for event in logged} == {dbt.process.pid}
    assert {event["info"]["level"] for event in logged} == {"info"}
    assert "dim_dates" in [event["info"]["msg"] for event in logged]
    names = {event["info"]["name"] for event in logged}
    assert {"MainReportVersion", "PrintEvent"} <= names and "CommandCompleted" not in names  # the latter: debug

    serialised: list[str] = []  # in this process: which events dbt's log lines were made of
    to_dict = functions.msg_to_dict
    monkeypatch.setattr(functions, "msg_to_dict", lambda msg: serialised.append(msg.info.level) or to_dict(msg))
    line = command_line(args, load_registry(), run_target(settings, "run-2"))
    log = tmp_path / DBT_LOG
    with environ(process_environment(settings)), contextlib.chdir(working_directory(settings) or Path.cwd()):
        assert dbt_child.run_dbt([dbt_child.JSON_LOG, str(log), *line[1:]]) == 0
        assert dbt_child.run_dbt([dbt_child.JSON_LOG, str(log), "no-such-command"]) == 2  # as dbt's usage error
    assert serialised and set(serialised) <= {"info", "warn", "error"}
    assert len(serialised) == len(log.read_text().splitlines())  # each one a kept line, made once


def test_a_waiting_dbt_builds_the_schemas_dbt_checks_its_command_against() -> None:
    """While it waits, ``dataops-dbt`` builds the JSON schemas of the project, its flags and the credentials:
    the command then finds them built (in a new interpreter, as the waiting process is one)."""
    import sys

    code = (
        "from dataops.transform.dbt_child import prepare; prepare('duckdb'); "
        "from dbt.contracts.project import PackageConfig, Project, ProjectFlags; "
        "from dbt.adapters.duckdb import Plugin; built = Project.json_schema.__func__.cache_info; "
        "before = built().misses; "
        "[schema.json_schema() for schema in (Project, PackageConfig, ProjectFlags, Plugin.credentials)]; "
        "print(before, built().misses)"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = ran.stdout.split()
    assert int(before) == int(after) >= 4  # nothing left for the command to build


def test_a_waiting_dbt_compiles_the_templates_of_the_macros_a_build_calls(tmp_path: Path) -> None:
    """It is given the data directory's last parse and compiles, while it waits, the templates of the macros
    the project's nodes and materialisations call (docs/decisions/0099): dbt then finds them compiled (in a new
    interpreter, as the waiting process is one). A parse it cannot read is no error: there is nothing to warm."""
    import sys

    from dataops.transform.runner import recent_parse, start_waiting_dbt

    settings = Settings(tmp_path / "data")
    settings.data_dir.mkdir()
    target = run_target(settings, "run-1")
    assert run_dbt(["parse"], settings, target=target).success
    keep_run_target(settings, target)
    parse = recent_parse(settings)
    assert parse is not None and parse.parent == settings.dbt_runs_dir
    waiting = start_waiting_dbt(settings)
    assert waiting is not None and waiting.process.args[-1] == str(parse)
    waiting.end()

    code = (
        "import json, sys; from dbt_common.clients.jinja import template_cache; "
        "from dbt.contracts.graph.manifest import Manifest; "
        "from dataops.transform.dbt_child import reachable_macros, warm_templates; "
        "warmed = warm_templates(sys.argv[1]); compiled = set(template_cache.file_cache); "
        "manifest = Manifest.from_msgpack(open(sys.argv[1], 'rb').read()); wanted = reachable_macros(manifest); "
        "print(json.dumps({'warmed': warmed, 'wanted': sorted(wanted), 'garbage': warm_templates(sys.argv[2]), "
        "'compiled': [m for m in wanted if manifest.macros[m].macro_sql in compiled], "
        "'stopped': warm_templates(sys.argv[1], stop=lambda: True)}))"
    )
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"not a parse")
    ran = subprocess.run([sys.executable, "-c", code, str(parse), str(garbage)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout)
    assert out["warmed"] == len(out["wanted"]) == len(out["compiled"]) > 100  # each one compiled, nothing left
    assert {"macro.dataops.window_start", "macro.dataops.test_column_rules"} <= set(out["wanted"])
    assert "macro.dbt.materialization_incremental_default" in out["wanted"]
    assert "macro.dbt.materialization_snapshot_default" not in out["wanted"]  # the project has no snapshot
    assert out["garbage"] == 0
    assert out["stopped"] == 0  # the command came: it stops at once, and dbt compiles what it needs itself

    # as the build run starts it: the parse given on its command line is warmed before the command is read
    code = (
        "import json, sys; from dbt_common.clients.jinja import template_cache; "
        "from dataops.transform import dbt_child; "
        "dbt_child._readable = lambda stream: False; "  # the command is already waiting on stdin: warm anyway
        "dbt_child.run_dbt = lambda args: print(json.dumps([args, len(template_cache.file_cache)])) or 0; "
        "sys.argv = ['dataops-dbt', dbt_child.WAIT_FOR_COMMAND, sys.argv[1]]; dbt_child.main()"
    )
    command = json.dumps({"args": ["ls"], "env": dict(os.environ), "cwd": None}) + "\n"
    ran = subprocess.run([sys.executable, "-c", code, str(parse)], input=command, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    args, compiled = json.loads(ran.stdout.splitlines()[-1])
    assert args == ["ls"] and compiled >= out["warmed"]
    # dbt's macro debugger needs the templates compiled its own way, once its flags are read: no warm-up then
    debugging = os.environ | {"DBT_MACRO_DEBUGGING": "1"}
    ran = subprocess.run(
        [sys.executable, "-c", code, str(parse)], input=command, capture_output=True, text=True, env=debugging
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout.splitlines()[-1]) == [["ls"], 0]


def test_a_waiting_dbt_sees_its_command_come_without_waiting_for_it() -> None:
    """The warm-up stops as soon as the command's line (or the end of stdin) is there to read."""
    from dataops.transform.dbt_child import _readable

    read, write = os.pipe()
    with os.fdopen(read) as stdin:
        assert not _readable(stdin)
        os.write(write, b"{}\n")
        assert _readable(stdin)
        os.close(write)


@pytest.mark.parametrize("server", ["", "from dataops.transform import dbt_server; dbt_server.enable(); "])
def test_a_waiting_dbt_ends_with_the_process_that_started_it_or_when_it_is_not_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    """Killed (SIGKILL) while its dbt waits, a run leaves no process behind to hold the warehouse: the waiting
    ``dataops-dbt`` gets the parent-death signal, whether the run started it or the run's dbt fork server forked
    it (which ends with the run). A run that needs no dbt ends it at once, and so does a step that fails before
    it hands it the command."""
    import sys
    import time

    from dataops.transform.runner import start_waiting_dbt

    settings = Settings(tmp_path)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dataops.core.settings import Settings; "
            f"{server}from dataops.transform.runner import start_waiting_dbt; "
            f"print(start_waiting_dbt(Settings.from_env({str(tmp_path)!r})).process.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _running(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(child):  # the failure this test is about: not left to run after the test
        os.kill(child, signal.SIGKILL)
        raise AssertionError(f"dataops-dbt {child} outlived the process that started it")

    waiting = start_waiting_dbt(settings)
    started = time.monotonic()
    waiting.end()
    assert waiting.process.returncode == -signal.SIGTERM and time.monotonic() - started < 5

    def no_environment(*args: object) -> dict[str, str]:
        raise OSError("the step failed before it handed dbt its command")

    from dataops.transform import runner

    monkeypatch.setattr(runner, "process_environment", no_environment)
    waiting = start_waiting_dbt(settings)
    with pytest.raises(OSError):
        start_dbt(["parse"], settings, tmp_path / "target", waiting=waiting)
    assert waiting.process.poll() is not None


def _running(pid: int) -> bool:
    """Whether the process is there and not a zombie (one its new parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
