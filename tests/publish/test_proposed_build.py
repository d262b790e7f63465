"""A proposal's checked build is adopted as it is only while nothing it was made from has changed."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.governance.definition_versions import proposal_dir
from dataops.publish import definition_change
from registry.versions import change_from_data, registry_at

CHANGE = {
    "version": 2,
    "author": "marketing council",
    "reason": "stricter",
    "approved": "2025-01-25",
    "effective": "2025-02-01",
    "restates_history": False,
    "set": {"mql.score_threshold": 65},
}


def kept(tmp_path: Path) -> tuple[Settings, Path]:
    """An adopted build warehouse, and a proposal of v2 whose checked build (marked) is kept beside it."""
    settings = Settings(tmp_path / "data")
    settings.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("create table adopted as select 1 as v")
    folder = proposal_dir(settings, 2)
    aside = Settings(folder / "data")
    basis = definition_change._copy_build(settings, aside)
    with duckdb.connect(str(aside.build_db)) as conn:
        conn.execute("create table proposed as select 2 as v")
    registry = registry_at(2, [change_from_data(CHANGE, "test")])
    definition_change._keep_build(folder, aside, basis, 1, registry)
    return settings, folder


def tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {name for (name,) in conn.sql("select table_name from duckdb_tables()").fetchall()}


def test_adopting_as_proposed_swaps_the_checked_build_in(tmp_path: Path) -> None:
    settings, folder = kept(tmp_path)
    registry = registry_at(2, [change_from_data(CHANGE, "test")])
    assert definition_change._swap_in_proposed_build(settings, 2, 1, registry)
    assert tables(settings.build_db) == {"adopted", "proposed"}
    assert not (folder / "build.duckdb").exists() and not (folder / "build.json").exists()


@pytest.mark.parametrize("what", ["a run since", "other definitions", "another version adopted"])
def test_anything_changed_since_the_proposal_means_building_again(tmp_path: Path, what: str) -> None:
    settings, folder = kept(tmp_path)
    registry, current = registry_at(2, [change_from_data(CHANGE, "test")]), 1
    if what == "a run since":
        with duckdb.connect(str(settings.build_db)) as conn:
            conn.execute("insert into adopted values (3)")
    elif what == "other definitions":
        registry = registry_at(2, [change_from_data({**CHANGE, "set": {"mql.score_threshold": 70}}, "test")])
    else:
        current = 3
    assert not definition_change._swap_in_proposed_build(settings, 2, current, registry)
    assert tables(settings.build_db) == {"adopted"}  # untouched: adoption rebuilds it
    assert not (folder / "build.duckdb").exists()  # the stale build is gone
