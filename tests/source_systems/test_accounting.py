"""The accounting exports: one atomic folder per day, a manifest, CSV quirks, corrected re-exports."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from quality.contracts.accounting import RENAMING_RELEASE
from source_systems.accounting.export import TABLES
from tests.conftest import TINY_DAYS, TINY_START

pytestmark = pytest.mark.xdist_group("tiny")


def _folders(sources: Path) -> list[Path]:
    return sorted((sources / "accounting" / "exports").iterdir())


def test_one_complete_folder_per_business_day(tiny_sources: Path) -> None:
    folders = _folders(tiny_sources)
    assert [f.name for f in folders] == [
        (TINY_START + dt.timedelta(days=i)).isoformat() for i in range(TINY_DAYS)
    ]  # no temporary folders left behind
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["business_date"] == folder.name
        assert {e["table"] for e in manifest["files"]} == set(TABLES)


def test_manifest_checksums_and_row_counts_match_the_files(tiny_sources: Path) -> None:
    for folder in _folders(tiny_sources):
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["files"]:
            data = (folder / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            with (folder / entry["name"]).open(encoding="utf-8-sig", newline="") as fh:
                assert sum(1 for _ in csv.DictReader(fh)) == entry["rows"]


def test_files_start_with_a_byte_order_mark(tiny_sources: Path) -> None:
    for folder in _folders(tiny_sources)[:5]:
        for table in TABLES:
            assert (folder / f"{table}.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_amounts_use_thousands_separators_and_dates_mix_formats(tiny_sources: Path) -> None:
    amounts, dates = set(), set()
    for folder in _folders(tiny_sources):
        with (folder / "journal_lines.csv").open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                amounts.add("," in row["debit"] + row["credit"])
                date = row["posting_date"]
                dates.add("iso" if date[4] == "-" else "us" if "/" in date else "eu" if "." in date else "text")
    assert amounts == {True, False}
    assert dates == {"iso", "us", "eu", "text"}


def test_a_corrected_reexport_supersedes_the_original(tiny_sources: Path) -> None:
    corrected = [f for f in _folders(tiny_sources) if (f / "payments_v2.csv").exists()]
    assert corrected
    for folder in corrected:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["version"] >= 2
        entry = next(e for e in manifest["files"] if e["table"] == "payments")
        assert entry == {**entry, "name": "payments_v2.csv", "supersedes": "payments.csv"}
        with (folder / "payments.csv").open(encoding="utf-8-sig") as fh:
            original = list(csv.DictReader(fh))
        with (folder / "payments_v2.csv").open(encoding="utf-8-sig") as fh:
            fixed = list(csv.DictReader(fh))
        assert len(fixed) > len(original)
        assert all(row in fixed for row in original)
        assert manifest["generated_at"] > f"{folder.name}T23:59:59Z"  # written on a later day


def test_the_invoice_export_drifts_on_its_day(tiny_sources: Path, tiny_config: object) -> None:
    drift = RENAMING_RELEASE.date  # the registry's date of the accounting release, inside the tiny window
    assert TINY_START < drift < TINY_START + dt.timedelta(days=TINY_DAYS)
    before = tiny_sources / "accounting" / "exports" / (drift - dt.timedelta(days=1)).isoformat()
    after = tiny_sources / "accounting" / "exports" / drift.isoformat()
    header_before = (before / "invoices.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    header_after = (after / "invoices.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert "amount" in header_before and "gross_amount" not in header_before
    assert "gross_amount" in header_after and "amount" not in header_after
    assert set(header_after) - set(header_before) == {"gross_amount", "po_number"}
