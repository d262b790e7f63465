"""The data tests of the lead models read the rows written since their tests last passed (docs/decisions/0077),
and still prove the whole table: a build's rows stay under test until a build's tests pass over them, a
parent removed breaks `relationships`, and a missing record or a full build tests the whole table.

Each step builds the two lead staging models (and their tests) on a copy of the ``built`` warehouse, whose
Dagster run kept and cleared the records (tests/transforms/test_incremental_staging.py builds the same way)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.transform.runner import DbtResult, run_dbt
from tests.transforms.test_incremental_staging import (
    LAST,
    copy_of,
    scalar,
)

pytestmark = pytest.mark.xdist_group("built")

LEADS = ("stg_crm__leads", "stg_crm__lead_changes")
UNIQUE = "column_rules_stg_crm__lead_changes"  # its unique rule (decision 0098)
RELATIONSHIPS = "relationships_stg_crm__lead_changes_lead_id__lead_id__ref_stg_crm__leads_"
NARROWED = ("stg_crm__leads", "stg_crm__lead_changes", "int_leads_qualified", "int_people_qualified")
NARROWED += ("fct_leads", "dim_people")


def build(settings: Settings, day: dt.date, *args: str, command: str = "build") -> DbtResult:
    # no dbt JSON artefacts: the results come from dbt's result in memory (run_dbt in process)
    window = (day.isoformat(), day.isoformat())
    return run_dbt([command, "--select", *LEADS, *args, "--no-write-json"], settings, window=window, in_process=True)


def failed(result: DbtResult) -> set[str]:
    """The names of the data tests that failed."""
    return {node["unique_id"].split(".")[2] for node in result.results if node["status"] == "fail"}


def untested(settings: Settings, model: str) -> int | None:
    """How many keys the model's record holds (None: no record)."""
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        kept = scalar(
            conn,
            "select count(*) from information_schema.tables where table_schema = 'pipeline' and table_name = ?",
            [f"untested__{model}"],
        )
        return int(scalar(conn, f"select count(*) from pipeline.untested__{model}")) if kept else None


def test_the_lead_tests_read_the_rows_written_since_they_last_passed_and_still_prove_the_table(
    built: Path, tmp_path: Path
) -> None:
    settings = copy_of(built, tmp_path)
    # the built warehouse's run kept a record of every narrowed model and cleared it: its tests passed
    assert {model: untested(settings, model) for model in NARROWED} == dict.fromkeys(NARROWED, 0)
    with duckdb.connect(str(settings.build_db)) as conn:
        old = scalar(conn, "select min(loaded_partition) from staging.stg_crm__lead_changes")
        # a duplicate of an old lead change, by hand (no build writes one): a build of the last day does not
        # read it, as none of its rows shares its key
        conn.execute(
            "insert into staging.stg_crm__lead_changes select * from staging.stg_crm__lead_changes "
            "where lead_change_id = (select min(lead_change_id) from staging.stg_crm__lead_changes "
            "where loaded_partition = ?)",
            [old],
        )
    normal = build(settings, LAST)
    assert normal.success, normal.output[-3000:]
    assert untested(settings, "stg_crm__lead_changes") == 0
    # a full build notes every key: the next tests read the whole table
    full = build(settings, LAST, "--full-refresh", command="run")
    assert full.success, full.output[-3000:]
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute(
            "insert into staging.stg_crm__lead_changes select * from staging.stg_crm__lead_changes "
            "where lead_change_id = (select min(lead_change_id) from staging.stg_crm__lead_changes)"
        )
    assert failed(build(settings, LAST, command="test")) == {UNIQUE}
    # without the record (the first build after the change), the whole table is tested too
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("drop table pipeline.untested__stg_crm__lead_changes")
    first = build(settings, LAST)
    assert failed(first) == {UNIQUE}
    assert untested(settings, "stg_crm__lead_changes") == 1  # every key, until its tests pass


def test_a_removed_parent_and_a_failed_build_stay_under_test_until_a_build_passes(built: Path, tmp_path: Path) -> None:
    settings = copy_of(built, tmp_path)
    with duckdb.connect(str(settings.build_db)) as conn:
        # a lead loaded once, on an old day, and its changes; those loaded the same day are moved to the day
        # before (by hand, in the raw and staged rows alike), so that the old day's re-run, which drops the lead,
        # writes none of them
        lead, day = conn.execute(
            "select min(Id), min(_partition) from raw.crm__leads where _partition < ? and Id in "
            "(select LeadId from raw.crm__lead_history) and Id in "
            "(select Id from raw.crm__leads group by Id having count(*) = 1) group by _partition "
            "order by _partition desc limit 1",
            [LAST - dt.timedelta(days=7)],
        ).fetchone()
        for table, column, partition in (
            ("raw.crm__lead_history", "LeadId", "_partition"),
            ("staging.stg_crm__lead_changes", "lead_id", "loaded_partition"),
        ):
            conn.execute(
                f"update {table} set {partition} = {partition} - 1 where {column} = ? and {partition} = ?",
                [lead, day],
            )
        conn.execute("create table main.removed_lead as select * from raw.crm__leads where Id = ?", [lead])
        conn.execute("delete from raw.crm__leads where Id = ?", [lead])
    dropped = build(settings, day)
    # the lead's changes were written by no build since the tests last passed: the removed parent breaks them
    assert failed(dropped) == {RELATIONSHIPS}
    assert scalar_of(settings, "select count(*) from staging.stg_crm__leads where lead_id = ?", lead) == 0
    # the next build writes none of those rows, and its tests still read them: the failed build's record stays
    later = build(settings, LAST)
    assert failed(later) == {RELATIONSHIPS}
    # a row written since the tests last passed that collides with an older row
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("insert into raw.crm__leads select * from main.removed_lead")
        written = scalar(
            conn, "select min(lead_change_id) from staging.stg_crm__lead_changes where loaded_partition < ?", [day]
        )
        conn.execute(
            "insert into staging.stg_crm__lead_changes select * replace (? as loaded_partition) "
            "from staging.stg_crm__lead_changes where lead_change_id = ?",
            [LAST, written],
        )
        conn.execute("insert into pipeline.untested__stg_crm__lead_changes values (?)", [written])
    assert failed(build(settings, day)) == {UNIQUE}
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute(
            "delete from staging.stg_crm__lead_changes where lead_change_id = ? and loaded_partition = ?",
            [written, LAST],
        )
    # the parent back and the duplicate gone: a build passes and clears the records
    restored = build(settings, day)
    assert restored.success, restored.output[-3000:]
    assert {model: untested(settings, model) for model in LEADS} == dict.fromkeys(LEADS, 0)


def scalar_of(settings: Settings, sql: str, *parameters: object) -> object:
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        return scalar(conn, sql, list(parameters))
