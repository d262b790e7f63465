"""A published warehouse with one user per role, policies with tight brakes, and the gateway's two doors
(the CLI in process, the HTTP API as a real server) to drive against them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.gateway import Gateway
from dataops.governance.policy import POLICY_PATH, Policy, load_policy
from dataops.governance.users import User, add_user
from tests.local import free_port
from tests.pipeline import environment

ROLES = ("analyst", "finance", "sales_ops", "marketing_ops", "executive", "data_engineer")
DATAOPS = Path(sys.executable).with_name("dataops")


@dataclass
class Governed:
    settings: Settings
    policy: Policy
    tokens: dict[str, str]
    policy_path: Path = POLICY_PATH
    env: dict[str, str] = field(default_factory=dict)

    def user(self, role: str) -> User:
        return User(f"{role}_user", role)

    def gateway(self) -> Gateway:
        return Gateway(self.settings, self.policy)

    def audit_lines(self) -> int:
        return len(audit.read(self.settings))

    def new_records(self, since: int) -> list[dict[str, Any]]:
        return audit.read(self.settings)[since:]


@pytest.fixture(scope="module")
def governed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    root = tmp_path_factory.mktemp("governed")
    shutil.copytree(built, root, dirs_exist_ok=True)
    settings = Settings(root)  # `built` ran the whole job, publishing included
    policy = load_policy()
    tokens = {role: add_user(settings, policy, f"{role}_user", role) for role in ROLES}
    with environment(DATAOPS_DATA_DIR=str(root)):
        yield Governed(settings, policy, tokens)


def policy_with(governed: Governed, folder: Path, limits: dict[str, Any], server: dict[str, Any]) -> Governed:
    """The same warehouse and users under a policy whose analyst limits and server settings are replaced."""
    data = yaml.safe_load(POLICY_PATH.read_text())
    data["limits"]["analyst"] = limits
    data["server"].update(server)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Governed(governed.settings, load_policy(path), governed.tokens, path)


# The statement timeout of the tiny-limit policies: short enough that the timeout, not the 128 MB memory
# limit, stops the repeated-strings attacks; a legitimate query (its worker's start-up included) finishes in it
# on a quiet machine, not on one loaded tenfold.
BRAKE_SECONDS = 1


@pytest.fixture(scope="module")
def braked(governed: Governed, tmp_path_factory: pytest.TempPathFactory) -> Governed:
    """The same warehouse under a policy whose analyst limits are tiny."""
    limits = {"max_scan_rows": 2_000, "statement_timeout_seconds": BRAKE_SECONDS, "max_result_rows": 10}
    return policy_with(governed, tmp_path_factory.mktemp("policy"), limits, {})


def cli(governed: Governed, *args: str, token: str | None = None, **env: str) -> tuple[int, str]:
    """`dataops ARGS` in process (the CLI door's own code), as the test's OS account; exit code and output."""
    from application.cli.main import app

    variables = {
        "DATAOPS_DATA_DIR": str(governed.settings.data_dir),
        "DATAOPS_POLICY": str(governed.policy_path),
        "DATAOPS_TOKEN": token,
        "COLUMNS": "200",
        **env,
    }
    result = CliRunner().invoke(app, list(args), env=variables, catch_exceptions=False)
    return result.exit_code, result.output


@contextmanager
def serve(governed: Governed, **env: str) -> Iterator[str]:
    """`dataops api serve` on a loopback port, for the warehouse and policy given; yields its URL."""
    port = free_port()
    variables = {
        **os.environ,
        "DATAOPS_DATA_DIR": str(governed.settings.data_dir),
        "DATAOPS_POLICY": str(governed.policy_path),
        **env,
    }
    server = subprocess.Popen(
        [str(DATAOPS), "api", "serve", "--port", str(port)],
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"`dataops api serve` did not start: {server.communicate()[1][-2000:]}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def ask(url: str, token: str | None, sql: str, fmt: str = "json", **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/query", json={"sql": sql, "format": fmt}, headers={**sent, **headers}, timeout=120)


def json_rows(output: str) -> list[dict[str, Any]]:
    """The rows of a `--format json` answer (the notes on stderr may come before it)."""
    line = next(line for line in output.splitlines() if line.startswith("{"))
    rows: list[dict[str, Any]] = json.loads(line)["rows"]
    return rows
