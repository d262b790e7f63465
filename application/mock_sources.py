"""The simulated systems of record, started by the application for a demo, a test or a benchmark.

The pipeline reaches a CRM only through ``CRM_BASE_URL`` and ``CRM_TOKEN``; where none is configured and the
data directory holds a simulated enterprise, the application serves the mock CRM over it on a loopback port
and points the platform at it. The world's clock (moving the simulation on to yesterday) also lives here:
ingestion never starts or advances a simulation.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dataops.core.settings import Settings, environ
from source_systems.crm.server import DEFAULT_TOKEN, start_in_thread
from source_systems.simulator.run import simulate, simulated_through


def mock_sources_in_use(settings: Settings) -> bool:
    """Mock systems when no CRM is configured, the data directory holds a simulation, and not switched off."""
    return (
        not os.environ.get("CRM_BASE_URL")
        and os.environ.get("DATAOPS_MOCK_SOURCES", "1") != "0"
        and settings.crm_db.exists()
    )


@contextmanager
def crm_environment(settings: Settings) -> Iterator[dict[str, str]]:
    """Within the block, ``CRM_BASE_URL``/``CRM_TOKEN`` name a CRM: the configured one, else the mock CRM."""
    if not mock_sources_in_use(settings):
        yield {}
        return
    with start_in_thread(settings.crm_db, token=os.environ.get("CRM_TOKEN") or DEFAULT_TOKEN) as server:
        values = {"CRM_BASE_URL": server.url, "CRM_TOKEN": server.token}
        with environ(values):
            yield values


def advance_world(settings: Settings, through: dt.date) -> int:
    """Move the simulated enterprise on to ``through`` (when mocks are in use); returns the days simulated."""
    if not mock_sources_in_use(settings):
        return 0
    done = simulated_through(settings.sources_dir)
    if done is None or done >= through:
        return 0
    return simulate(settings.sources_dir, through).days_simulated


class WorldClock(threading.Thread):
    """Keeps the simulated enterprise at yesterday while a demo's UI runs, so the daily schedule has a day.

    It checks every ``interval`` seconds; a new UTC day is simulated within that interval of midnight, well
    before the 02:00 schedule.
    """

    def __init__(self, settings: Settings, interval: float = 300.0) -> None:
        super().__init__(name="world-clock", daemon=True)
        self.settings, self.interval = settings, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
            advance_world(self.settings, yesterday)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
