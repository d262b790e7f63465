"""A day's publish of ``marts.dim_people`` compares the people of the months the day touched (decision 0087).

Publishing compares a table's rows one by one only in the months of its first date column whose digest moved
(decision 0071). ``dim_people``'s first date column is the day of the person's first lead: a day adds new
people and changes recent ones, so their months are the recent ones, not the people without an MQL date (most
of them, in a month of their own that changed every day while ``mql_date`` came first)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from dataops.core.digest import month_name
from tests.published import LateRun, Published, built_not_published

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("published")]

PEOPLE = "select email, first_lead_date, lead_count, mql_date, accepted_date, sql_date from marts.dim_people"


def people(build_db: Path) -> set[tuple[object, ...]]:
    with duckdb.connect(str(build_db), read_only=True) as conn:
        return set(conn.execute(PEOPLE).fetchall())


def test_a_days_publish_compares_only_the_months_of_the_first_leads_of_the_people_it_changed(
    published: Published, late_run: LateRun, tmp_path: Path
) -> None:
    from dataops.publish.analyst_warehouse import publish

    case = built_not_published(published, late_run, tmp_path / "case")
    before, after = people(published.settings.build_db), people(case.settings.build_db)
    changed = before ^ after  # the rows the late day's build added, removed or changed
    months = {month_name(day.year * 100 + day.month) for _, day, *_ in changed if isinstance(day, dt.date)}
    assert changed and months and all(day is not None for _, day, *_ in after)

    report = publish(case.settings, (case.late_day, case.late_day), run_id="people")

    assert "marts.dim_people" not in report.rewritten
    assert sorted(report.compared["marts.dim_people"]) == sorted(months)
    first = [day for _, day, *_ in after]
    assert sum(month_name(day.year * 100 + day.month) in months for day in first) < len(first)  # not every person
