"""Run the mock CRM: in a background thread on an ephemeral loopback port, or in the foreground."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from source_systems.crm.api import Faults, create_app
from source_systems.crm.bulk import RECORDS_PER_FILE

DEFAULT_TOKEN = "dev-crm-token"


@dataclass
class RunningServer:
    url: str
    token: str
    faults: Faults
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    db_path: Path,
    token: str = DEFAULT_TOKEN,
    faults: Faults | None = None,
    rate_per_second: float = 50.0,
    burst: int = 100,
    bulk_records_per_file: int = RECORDS_PER_FILE,
) -> RunningServer:
    """Serve the CRM on 127.0.0.1 with an ephemeral port; returns once it accepts connections."""
    faults = faults or Faults()
    app = create_app(db_path, token, faults, rate_per_second, burst, bulk_records_per_file)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mock-crm", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the mock CRM did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(f"http://127.0.0.1:{port}", token, faults, server, thread)


def serve_forever(db_path: Path, host: str, port: int, token: str) -> None:
    uvicorn.run(create_app(db_path, token), host=host, port=port, log_level="info")
