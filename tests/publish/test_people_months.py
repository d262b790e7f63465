"""A day's publish of ``marts.dim_people`` compares the people of the months the day touched (decision 0087).

Publishing compares a table's rows one by one only in the months of its first date column whose digest moved
(decision 0071). ``dim_people``'s first date column is the day of the person's first lead: a day adds new
people and changes recent ones, so their months are the recent ones, not the people without an MQL date (most
of them, in a month of their own that changed every day while ``mql_date`` came first)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataops.core.digest import month_name
from dataops.publish.analyst_warehouse import Target
from tests.published import LateRun, Published, built_not_published

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]

PEOPLE = "select email, first_lead_date, lead_count, mql_date, accepted_date, sql_date from marts.dim_people"


def people(build_db: Path) -> set[tuple[object, ...]]:
    with duckdb.connect(str(build_db), read_only=True) as conn:
        return set(conn.execute(PEOPLE).fetchall())


def test_a_days_publish_compares_only_the_months_of_the_first_leads_of_the_people_it_changed(
    published: Published, late_run: LateRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The months are observed where the publish picks them: ``PublishReport.compared`` lists those of the
    analyst file's pass, and a personal-data table's rows are compared by the restricted file's pass."""
    import dataops.publish.analyst_warehouse
    from dataops.publish.analyst_warehouse import publish

    case = built_not_published(published, late_run, tmp_path / "case")
    before, after = people(published.settings.build_db), people(case.settings.build_db)
    changed = before ^ after  # the rows the late day's build added, removed or changed
    months = {month_name(day.year * 100 + day.month) for _, day, *_ in changed if isinstance(day, dt.date)}
    assert changed and months and all(day is not None for _, day, *_ in after)

    compared: dict[str, list[str]] = {}
    spy = dataops.publish.analyst_warehouse._changed_months

    def changed_months(conn: duckdb.DuckDBPyConnection, held: Target, *args: Any) -> tuple[Any, list[int]]:
        found = spy(conn, held, *args)
        compared[held.table] = [month_name(month) for month in found[1]]
        return found

    monkeypatch.setattr(dataops.publish.analyst_warehouse, "_changed_months", changed_months)
    report = publish(case.settings, (case.late_day, case.late_day), run_id="people")

    assert "marts.dim_people" not in report.rewritten
    # the months of the people the day changed, by their first lead: no month of people without a date
    assert sorted(compared["restricted.marts.dim_people"]) == sorted(months) and "none" not in months
