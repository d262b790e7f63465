"""A real PostgreSQL server for the tests of the Dagster instance on PostgreSQL: Debian's packages, started in
a temporary folder on a free loopback port and stopped after the module.

initdb refuses to run as root, so a root test run starts the server as the ``postgres`` account the package
creates; anyone else starts it as themselves.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local import free_port


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make postgres` installs Debian's package")
    return Path(found[-1]).parent


def _as_server_account(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> None:
    done = subprocess.run(_as_server_account(args), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """postgresql://dagster@127.0.0.1:PORT/dagster on a throwaway server (fsync off: nothing here must last)."""
    pg = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="dataops-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data = root / "data"
    _run([str(pg / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8", "--no-sync"])
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run([str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"])
    try:
        _run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"])
        yield f"postgresql://dagster@127.0.0.1:{port}/dagster"
    finally:
        _run([str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
