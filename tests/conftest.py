"""Shared fixtures: small simulations are built once per session and shared read-only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate

TINY_START = dt.date(2025, 1, 1)
TINY_DAYS = 80


@pytest.fixture(scope="session")
def tiny_config() -> SimConfig:
    # Rates raised so that a tiny simulation still shows every kind of defect in every table.
    rates = DirtRates(duplicate=0.05, held_back_payment=0.1, orphan_fk=0.02, null_required=0.02, bad_amount=0.02)
    return SimConfig(seed=7, scale=0.05, start=TINY_START, dirt=rates)


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory, tiny_config: SimConfig) -> Path:
    """80 simulated days at a tiny scale; long enough for every scripted transition (do not modify)."""
    root = tmp_path_factory.mktemp("tiny") / "sources"
    simulate(root, TINY_START + dt.timedelta(days=TINY_DAYS - 1), tiny_config)
    return root
