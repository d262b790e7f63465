"""The same seed, scale and dates give identical systems; continuing day by day equals one shot."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from source_systems.crm.store import OBJECTS
from source_systems.erp.store import TABLES
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

# one worker for the module: its one-shot simulation is shared (tests/conftest.py, xdist groups)
pytestmark = pytest.mark.xdist_group("determinism")

START = dt.date(2025, 3, 1)
CONFIG = SimConfig(seed=11, scale=0.03, start=START)
END = START + dt.timedelta(days=34)


def _files(root: Path) -> dict[str, bytes]:
    """Every file except the SQLite databases (compared row by row) and their WAL side files."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sqlite" not in p.name
    }


def _rows(db: Path, tables: tuple[str, ...]) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"select * from {t} order by 1").fetchall() for t in tables}


def _assert_same(a: Path, b: Path) -> None:
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b)
    # the product's event objects and manifests are among them (and the state that carries late events over)
    assert any(name.endswith(".ndjson.gz") for name in files_a)
    assert any(name.endswith("pending_events.parquet") for name in files_a)
    different = [name for name in files_a if files_a[name] != files_b[name]]
    assert different == []
    assert _rows(a / "erp" / "erp.sqlite", TABLES) == _rows(b / "erp" / "erp.sqlite", TABLES)
    assert _rows(a / "crm" / "crm.sqlite", tuple(OBJECTS)) == _rows(b / "crm" / "crm.sqlite", tuple(OBJECTS))


@pytest.fixture(scope="module")
def once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """35 days simulated in one call: what a second call and a day-by-day continuation must each equal (read only)."""
    root = tmp_path_factory.mktemp("once")
    simulate(root, END, CONFIG)
    return root


def test_two_runs_give_the_same_bytes(once: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "b", END, CONFIG)
    _assert_same(once, tmp_path / "b")


def test_day_by_day_equals_one_shot(once: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "daily", START + dt.timedelta(days=24), CONFIG)
    for offset in range(25, 35):
        simulate(tmp_path / "daily", START + dt.timedelta(days=offset))  # continues with the stored config
    _assert_same(once, tmp_path / "daily")


def test_a_different_seed_gives_a_different_business(tmp_path: Path) -> None:
    end = START + dt.timedelta(days=9)
    simulate(tmp_path / "a", end, CONFIG)
    simulate(tmp_path / "b", end, CONFIG.with_(seed=12))
    assert _files(tmp_path / "a") != _files(tmp_path / "b")
