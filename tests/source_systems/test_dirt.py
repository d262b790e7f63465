"""The dirt log tells the truth: every logged defect is visible in the emitted records, and every
bogus-looking record in the systems is logged (nothing bogus is emitted unrecorded)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from source_systems.simulator.dirt import SPECS
from source_systems.simulator.world import COUNTRIES
from tests.source_systems.helpers import accounting_rows, system_rows

pytestmark = pytest.mark.xdist_group("tiny")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
ORPHAN_TARGETS = {
    ("erp", "contracts", "customer_no"): ("customers", "customer_no"),
    ("erp", "sales_order_lines", "order_no"): ("sales_orders", "order_no"),
    ("crm", "contacts", "AccountId"): ("accounts", "Id"),
    ("crm", "opportunities", "AccountId"): ("accounts", "Id"),
    ("crm", "lead_history", "LeadId"): ("leads", "Id"),
    ("crm", "opportunity_history", "OpportunityId"): ("opportunities", "Id"),
    ("acct", "payments", "invoice_no"): ("invoices", "invoice_no"),
    ("acct", "credit_memos", "invoice_no"): ("invoices", "invoice_no"),
}


@pytest.fixture(scope="module")
def dirt(tiny_sources: Path) -> pl.DataFrame:
    """The systems of record's dirt (the product's event stream has its own tests: test_events.py)."""
    return pl.read_parquet(tiny_sources / "truth" / "dirt_log.parquet").filter(pl.col("system") != "product")


def _with_key(df: pl.DataFrame, system: str, table: str) -> pl.DataFrame:
    key = SPECS[f"{system}.{table}"].key
    return df.with_columns(_key=pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator=":"))


def _records(sources: Path, system: str, table: str) -> pl.DataFrame:
    return _with_key(system_rows(sources, system, table), system, table)


def test_dirt_log_covers_both_classes_and_every_kind(dirt: pl.DataFrame) -> None:
    kinds = set(dirt["kind"])
    assert {
        "case_variant",
        "whitespace",
        "country_variant",
        "duplicate",
        "naive_timestamp",
        "offset_timestamp",
        "number_format",
        "date_format",
        "late_arrival",
        "held_back",
        "schema_drift",
        "name_variant",
    } <= kinds
    assert {"orphan_fk", "null_required", "bad_amount", "invalid_email"} <= kinds
    assert set(dirt.filter(pl.col("class") == "bogus")["kind"]) == {
        "orphan_fk",
        "null_required",
        "bad_amount",
        "invalid_email",
    }


CHECKS = {
    "case_variant": lambda v: v is not None and (v == v.upper() or v == v.lower()),
    "whitespace": lambda v: v is not None and v != v.strip(),
    "country_variant": lambda v: v not in COUNTRIES,
    "naive_timestamp": lambda v: "Z" not in v and not re.search(r"[+-]\d\d:\d\d$", v),
    "offset_timestamp": lambda v: re.search(r"[+-]\d\d:\d\d$", v) is not None,
    "number_format": lambda v: "," in v,
    "date_format": lambda v: re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is None,
    "null_required": lambda v: v is None or v == "",
    "invalid_email": lambda v: v is None or EMAIL.match(v.strip().lower()) is None,
}


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_each_logged_value_defect_is_in_the_record(tiny_sources: Path, dirt: pl.DataFrame, kind: str) -> None:
    entries = dirt.filter(pl.col("kind") == kind)
    assert entries.height > 0
    for (system, table, column), group in entries.group_by("system", "table", "column"):
        records = _records(tiny_sources, system, table)
        values = records.filter(pl.col("_key").is_in(group["key"].implode()))
        assert values.height >= group["key"].n_unique(), f"{system}.{table}: logged keys missing"
        bad = [v for v in values[column].to_list() if not CHECKS[kind](v)]
        # a row can carry several defects; only rows whose every copy lacks this one are wrong
        assert not bad or len(bad) < values.height, f"{kind} on {system}.{table}.{column}: {bad[:3]}"


def test_bad_amounts_are_zero_or_negative(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    for (system, table, column), group in dirt.filter(pl.col("kind") == "bad_amount").group_by(
        "system", "table", "column"
    ):
        values = _records(tiny_sources, system, table).filter(pl.col("_key").is_in(group["key"].implode()))
        amounts = values[column].cast(pl.String).str.replace_all(",", "").cast(pl.Float64)
        assert (amounts <= 0).all()


def test_orphans_point_nowhere_and_every_orphan_is_logged(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    for (system, table, column), (parent, parent_key) in ORPHAN_TARGETS.items():
        records = _records(tiny_sources, system, table)
        parents = set(system_rows(tiny_sources, system, parent)[parent_key].to_list())
        dangling = set(
            records.filter(
                pl.col(column).is_not_null() & (pl.col(column) != "") & ~pl.col(column).is_in(list(parents))
            )["_key"]
        )
        logged = set(dirt.filter((pl.col("kind") == "orphan_fk") & (pl.col("table") == table))["key"])
        assert dangling == logged, f"{system}.{table}"


def test_every_null_required_value_is_logged(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    for (system, table, column), group in dirt.filter(pl.col("kind") == "null_required").group_by(
        "system", "table", "column"
    ):
        records = _records(tiny_sources, system, table)
        nulls = set(records.filter(pl.col(column).is_null() | (pl.col(column).cast(pl.String) == ""))["_key"])
        assert nulls == set(group["key"])


def test_duplicates_appear_twice_in_their_export(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    for (table,), group in dirt.filter(pl.col("kind") == "duplicate").group_by("table"):
        rows = _with_key(accounting_rows(tiny_sources, table), "acct", table)
        counts = rows.filter(pl.col("_key").is_in(group["key"].implode())).group_by("_key", "_file").len()
        assert (counts["len"] >= 2).all()


def test_late_journal_lines_are_posted_to_an_earlier_day(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    late = dirt.filter(pl.col("kind") == "late_arrival")
    rows = _with_key(accounting_rows(tiny_sources, "journal_lines"), "acct", "journal_lines")
    rows = rows.filter(pl.col("_key").is_in(late["key"].implode()))
    assert rows.height >= late.height
    for posting, folder in rows.select("posting_date", "_day").iter_rows():
        for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y"):
            try:
                posted = dt.datetime.strptime(posting, fmt).date()
                break
            except ValueError:
                continue
        assert posted < dt.date.fromisoformat(folder)


def test_held_back_payments_arrive_only_in_the_corrected_reexport(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    # a re-export follows within three days: those held back in the last three have not arrived yet
    arrived = pl.col("day") <= dirt["day"].max() - 3  # type: ignore[operator]
    held = set(dirt.filter((pl.col("kind") == "held_back") & arrived)["key"])
    assert held
    rows = accounting_rows(tiny_sources, "payments")
    in_v1 = set(rows.filter(pl.col("_file") == "payments.csv")["payment_no"])
    in_v2 = set(rows.filter(pl.col("_file") == "payments_v2.csv")["payment_no"])
    assert held <= in_v2
    assert not held & in_v1
    assert in_v2 - held <= in_v1  # a re-export repeats the original rows


def test_invalid_emails_are_all_logged(tiny_sources: Path, dirt: pl.DataFrame) -> None:
    leads = system_rows(tiny_sources, "crm", "leads")
    invalid = set(
        leads.filter(
            ~pl.col("Email").str.strip_chars().str.to_lowercase().str.contains(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
        )["Id"]
    )
    assert invalid == set(dirt.filter(pl.col("kind") == "invalid_email")["key"])
