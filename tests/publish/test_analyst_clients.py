"""The published files open in the clients analysts have, not only in the platform's own DuckDB.

Each client lives in an environment of its own (`make clients`, tests/clients/README.md): the oldest DuckDB
1.x for Python, the 1.4 line for Python and the DuckDB CLI 1.5. They open the analyst file read-only again
and again while another process publishes the next day (a run's publishing step: its other steps do not
write the analysts' files), then read the restricted file and the data products `dataops export` wrote;
pyarrow reads the data products too. Written in DuckDB's newest storage format (the
platform's default without dataops.core.compatibility), the file opens in none of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataops.core.settings import PROJECT_ROOT, Settings
from dataops.egress.exports import exports_dir, product_files, read_manifest
from tests.published import LateRun, Published, built_not_published

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]

CLIENTS = PROJECT_ROOT / ".clients"
PINS = PROJECT_ROOT / "tests" / "clients"
READER = PINS / "read_published.py"
DATAOPS = Path(sys.executable).with_name("dataops")
# What an analyst's query sees of one publish: which publish, and the KPIs it holds.
SNAPSHOT = """
select (select publish_id from publish.publish_log order by published_at desc limit 1) as publish_id,
       cast(count(*) as varchar) as kpi_rows, cast(max(date_day) as varchar) as as_of,
       cast(sum(value) as varchar) as kpi_total
from kpis.kpi_daily
"""


def pinned(environment: str, package: str) -> str:
    found = re.search(rf"^{re.escape(package)}==(\S+)", (PINS / f"{environment}.txt").read_text(), re.MULTILINE)
    assert found, f"{package} is not pinned in tests/clients/{environment}.txt"
    return found.group(1)


@dataclass(frozen=True)
class Client:
    name: str
    version: str
    command: list[str]  # the client's executable (and the reader script, for Python)

    @property
    def is_cli(self) -> bool:
        return "python" not in Path(self.command[0]).name

    def query(self, database: Path | str, sql: str) -> list[list[str]]:
        """One read-only query (every value as text), or the client's own error."""
        if self.is_cli:
            opening = ["-readonly", str(database)] if database != ":memory:" else []
            done = subprocess.run(
                [*self.command, *opening, "-json", "-c", sql], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{self.name}: {done.stdout}{done.stderr}"
            return [[str(v) for v in row.values()] for row in json.loads(done.stdout or "[]")]
        stop = Path(os.devnull)  # exists: read once
        done = subprocess.run(
            [*self.command, str(database), str(stop), sql], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{self.name}: {done.stderr[-3000:]}"
        rows: list[list[str]] = json.loads(done.stdout.splitlines()[-1])["rows"]
        return rows


@pytest.fixture(scope="module")
def clients() -> list[Client]:
    """The analysts' clients, each at the version its requirements file pins (`make clients` installs them)."""
    found = [
        Client("duckdb (Python)", pinned("oldest", "duckdb"), [str(CLIENTS / "oldest/bin/python"), str(READER)]),
        Client("duckdb (Python)", pinned("current", "duckdb"), [str(CLIENTS / "current/bin/python"), str(READER)]),
        Client("duckdb CLI", pinned("current", "duckdb-cli"), [str(CLIENTS / "current/bin/duckdb")]),
    ]
    for client in found:
        if not Path(client.command[0]).exists():
            pytest.fail(f"{client.command[0]} is missing: `make clients` installs the analysts' clients")
    for client in found:  # the versions the docs name, and older than the platform's own DuckDB
        if client.is_cli:
            reported = subprocess.run([*client.command, "--version"], capture_output=True, text=True).stdout
            assert reported.startswith(f"v{client.version} "), reported
        else:  # the reader script runs, and says which duckdb it imported (one interpreter, not two)
            done = subprocess.run(
                [*client.command, ":memory:", os.devnull, "select 1"], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{client.name}: {done.stderr[-3000:]}"
            line = json.loads(done.stdout.splitlines()[-1])
            assert line["rows"] == [["1"]] and line["duckdb"] == client.version, (client, line)
        assert int(client.version.split(".")[0]) < int(duckdb.__version__.split(".")[0])
    return found


@dataclass
class Watcher:
    """A client opening the analyst file again and again in the background, recording what each opening saw."""

    client: Client
    database: Path
    stop: Path
    seen: list[tuple[str, ...]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._cli if self.client.is_cli else self._python, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.seen and not self.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.seen, f"{self.client.name} {self.client.version} read nothing: {self.errors}"

    def _python(self) -> None:
        process = subprocess.Popen(
            [*self.client.command, str(self.database), str(self.stop), SNAPSHOT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            self.seen.append(tuple(json.loads(line)["rows"][0]))
        if process.wait() != 0:
            self.errors.append(process.stderr.read()[-3000:])

    def _cli(self) -> None:
        while True:
            last = self.stop.exists()
            try:
                self.seen.append(tuple(self.client.query(self.database, SNAPSHOT)[0]))
            except AssertionError as exc:
                self.errors.append(str(exc))
                return
            if last:
                return
            time.sleep(0.2)

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=300)


def snapshot(settings: Settings) -> tuple[str, ...]:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        row = conn.execute(SNAPSHOT).fetchone()
    assert row is not None
    return tuple(str(v) for v in row)


@pytest.fixture
def world(published: Published, late_run: LateRun, tmp_path: Path) -> Iterator[Published]:
    yield built_not_published(published, late_run, tmp_path / "data")  # the next business day is built


# The publishing step of `dataops run`, in a process of its own: publish the built day.
PUBLISH = """
import datetime as dt, sys
from pathlib import Path
from dataops.core.settings import Settings
from dataops.publish.analyst_warehouse import publish
day = dt.date.fromisoformat(sys.argv[2])
publish(Settings(Path(sys.argv[1])), (day, day), run_id="clients")
"""


def test_the_analysts_clients_read_the_published_file_while_a_run_publishes(
    world: Published, clients: list[Client], tmp_path: Path
) -> None:
    settings = world.settings
    before = snapshot(settings)
    stop = tmp_path / "stop"
    watchers = [Watcher(client, settings.analytics_db, stop) for client in clients]
    for watcher in watchers:
        watcher.start()  # each has read the current publish before the run starts

    run = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(settings.data_dir), world.late_day.isoformat()],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    stop.touch()
    for watcher in watchers:
        watcher.join()

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    after = snapshot(settings)
    assert after[0] != before[0] and after[2] == world.late_day.isoformat()  # a new publish, one day on
    for watcher in watchers:
        who = f"{watcher.client.name} {watcher.client.version}"
        assert watcher.errors == [], who
        assert watcher.seen[0] == before and watcher.seen[-1] == after, who
        assert set(watcher.seen) <= {before, after}, who  # one publish or the next, never half of one
        assert len(watcher.seen) >= 3, who


def test_the_analysts_clients_read_the_restricted_file_and_the_data_products(
    world: Published, clients: list[Client]
) -> None:
    settings = world.settings
    run = subprocess.run(
        [str(DATAOPS), "export"], env={**os.environ, "DATAOPS_DATA_DIR": str(settings.data_dir)}, capture_output=True
    )
    assert run.returncode == 0, run.stderr
    with duckdb.connect(str(settings.restricted_db), read_only=True) as conn:
        ledger = [
            [str(v) for v in row]
            for row in conn.execute("select count(*), sum(debit_amount) from marts.fct_gl_entries").fetchall()
        ]
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        kpis = [
            [str(v) for v in row] for row in conn.execute("select count(*), sum(value) from kpis.kpi_daily").fetchall()
        ]
    assert int(ledger[0][0]) > 0 and int(kpis[0][0]) > 0
    index = json.loads((exports_dir(settings) / "index.json").read_text())
    products = {}
    for dataset in index["datasets"]:
        manifest = read_manifest(settings, dataset)
        assert manifest is not None
        products[dataset] = (product_files(settings, dataset), int(manifest["row_count"]))  # together, the dataset
    assert "kpis.kpi_daily" in products and len(products) > 10

    for client in clients:
        sql = "select cast(count(*) as varchar), cast(sum(debit_amount) as varchar) from marts.fct_gl_entries"
        assert client.query(settings.restricted_db, sql) == ledger, client
        kpi_files = products["kpis.kpi_daily"][0]
        sql = f"select cast(count(*) as varchar), cast(sum(value) as varchar) from read_parquet({_sql_list(kpi_files)})"
        assert client.query(":memory:", sql) == kpis, client
        every = " union all ".join(  # each row read whole, every column decoded (as text)
            f"select '{name}', cast(count(*) as varchar), cast(sum(length(cast(t as varchar))) as varchar) "
            f"from read_parquet({_sql_list(paths)}) as t"
            for name, (paths, _) in sorted(products.items())
        )
        read = {name: int(rows) for name, rows, _ in client.query(":memory:", every)}
        assert read == {name: rows for name, (_, rows) in products.items()}, client

    for _name, (paths, rows) in products.items():  # and pyarrow, the other common Parquet reader
        assert sum(pq.read_table(path).num_rows for path in paths) == rows
    table = pa.concat_tables(pq.read_table(path) for path in products["kpis.kpi_daily"][0])
    assert str(sum(table.column("value").to_pylist())) == kpis[0][1]


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join(f"'{path}'" for path in paths) + "]"
