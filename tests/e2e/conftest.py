"""The real Dagster webserver and daemon, on a loopback port, against a temporary instance and data."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from application.runs import dagster_home
from dataops.core.settings import PROJECT_ROOT, Settings
from source_systems.crm.server import RunningServer, start_in_thread
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate
from tests.local import free_port

START = dt.date(2025, 6, 1)
DAYS = 10
BIN = Path(sys.executable).parent
OUTPUT = PROJECT_ROOT / "test-output"


@dataclass
class Services:
    url: str
    root: Path
    logs: Path
    env: dict[str, str]  # the services' environment: the data directory, the instance, the CRM
    # One client for every request the tests make: `httpx.post` builds a client per call, and each client an SSL
    # context (the CA bundle read and parsed), about 20 CPU-ms, for every one of the few hundred polls of a run's
    # status. No connection is kept between requests: a polled webserver closing an idle one as the next request
    # goes out would fail that request.
    http: httpx.Client

    @property
    def settings(self) -> Settings:
        return Settings(self.root)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"query": query, "variables": variables or {}}
        response = self.http.post(f"{self.url}/graphql", json=body, timeout=60)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        assert "errors" not in answer, answer["errors"]
        return answer["data"]  # type: ignore[no-any-return]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")


# Both modules of this package carry this group: one worker runs them one after the other, against one pair of
# services (package-scoped: stopped after the package's last test, not left ticking for the rest of the session).
GROUP = pytest.mark.xdist_group("dagster_services")


@pytest.fixture(scope="package")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("dagster-e2e")
    settings = Settings(root)
    simulate(
        settings.sources_dir,
        START + dt.timedelta(days=DAYS - 1),
        SimConfig(seed=2, scale=0.02, start=START, product_events=False),
    )
    home = dagster_home(settings)  # with the platform's dagster.yaml: one run at a time
    crm = start_in_thread(settings.crm_db)  # the simulated CRM, served as `dataops ui` serves it
    env = {
        **os.environ,
        "DATAOPS_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "DAGSTER_TELEMETRY_DISABLED": "1",
        "CRM_BASE_URL": crm.url,
        "CRM_TOKEN": crm.token,
        # the event sensor looks every 5 s, not every minute: a delivered hour is not waited for a minute
        "DATAOPS_EVENTS_SENSOR_SECONDS": "5",
    }
    port, code_port = free_port(), free_port()
    logs = root / "logs"
    logs.mkdir()
    # The code location as its own gRPC server (`dagster api grpc`, the location the repository's workspace.yaml
    # names), with the webserver and the daemon pointed at it: one load of the definitions for both. With
    # workspace.yaml itself each starts a code server of its own, and the daemon a new one every minute (Dagster
    # reloads its workspace), each loading the whole location again: five or six loads in this package. A
    # deployment runs `dagster code-server start` (docs/deployment.md), a proxy in front of the same server: 8 CPU-s
    # more here.
    (entry,) = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"]
    location = entry["python_module"]
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {code_port}\n"
        f"      location_name: {location['location_name']}\n"
    )
    code_log = logs / "code-server.log"
    code_server = subprocess.Popen(
        [
            *(str(BIN / "dagster"), "api", "grpc", "-m", location["module_name"]),
            *("-d", str(PROJECT_ROOT / location["working_directory"]), "--location-name", location["location_name"]),
            *("-h", "127.0.0.1", "-p", str(code_port)),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=code_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the run workers it spawns are stopped with it
    )
    try:
        wait_for(
            lambda: "Started Dagster code server" in code_log.read_text() or code_server.poll() is not None,
            180,
            "the code server to load the code location",
            interval=1,
        )
        assert code_server.poll() is None, code_log.read_text()[-3000:]
    except BaseException:
        _stop([], code_server, crm)
        raise
    processes: list[subprocess.Popen[bytes]] = []
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
    try:  # whatever fails from here, nothing started is left behind: the code server and its runs, the CRM
        for command, log in (
            ([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)], "webserver"),
            ([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], "daemon"),
        ):
            out = (logs / f"{log}.log").open("w")
            processes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))

        def loaded() -> bool:
            try:
                body = http.post(
                    f"{url}/graphql",
                    json={
                        "query": "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name } } } }"
                    },
                    timeout=5,
                ).json()
            except httpx.HTTPError:
                return False
            nodes = body.get("data", {}).get("repositoriesOrError", {}).get("nodes") or []
            return bool(nodes)

        wait_for(loaded, 180, "the webserver to load the code location", interval=2)
        yield Services(url, root, logs, env, http)
    finally:
        http.close()
        _stop(processes, code_server, crm)


def _stop(processes: list[subprocess.Popen[bytes]], code_server: subprocess.Popen[bytes], crm: RunningServer) -> None:
    """The webserver and the daemon, then the code server with the runs it started, then the CRM."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    _stop_group(code_server)
    crm.stop()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in a session of its own, and every process of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
