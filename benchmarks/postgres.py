"""A throwaway PostgreSQL server for a Dagster instance on PostgreSQL: Debian's packages (``make postgres``),
started in a temporary folder on a free loopback port, removed when the context ends. The tests of the
instance on PostgreSQL use it (tests/postgres/conftest.py), and so does the harness's ``--dagster-storage
postgres``, which gives each instance it measures a new database of its own.

initdb refuses to run as root, so as root the server runs as the ``postgres`` account the package creates.

``durable=False`` (the tests) turns off fsync and synchronous commits: nothing there must last. The harness
keeps the server's defaults, as a deployment would, so that a commit costs what it costs in production and
the comparison with SQLite (which syncs its files) is fair.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "dagster"
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make postgres` installs Debian's package")
    return Path(found[-1]).parent


def _as_server_account(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> str:
    done = subprocess.run(_as_server_account(args), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    bin: Path
    port: int
    version: str

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, database: str) -> str:
        """An empty database of that name (an earlier one dropped first), and its URL."""
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", USER]
        _run([str(self.bin / "dropdb"), *where, "--if-exists", database])
        _run([str(self.bin / "createdb"), *where, database])
        return self.url(database)


@contextlib.contextmanager
def temporary_server(durable: bool = True) -> Iterator[Server]:
    """A new server, user ``dagster`` with trust authentication on 127.0.0.1; stopped and deleted afterwards."""
    pg = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="dataops-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data = root / "data"
    try:
        _run([str(pg / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-h 127.0.0.1 -p {port} -k {root}" + ("" if durable else f" {FAST}")
        _run([str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"])
        try:
            version = _run([str(pg / "postgres"), "--version"]).strip()
            yield Server(pg, port, version)
        finally:
            _run([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
