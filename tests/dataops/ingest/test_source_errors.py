"""Every way a delivered accounting day can be wrong fails at once (never retried: it fails the same way
again) with a message that names the file, the business date and, where there is one, the line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from dataops.core.settings import Settings
from dataops.ingest.connectors import SourceDataError, SourceUnavailable
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.contract import ContractViolation
from dataops.ingest.pipeline import ingest
from quality.contracts import contract_for
from tests.dataops.ingest.conftest import START

pytestmark = pytest.mark.xdist_group("ingest")
DAY = START + dt.timedelta(days=3)
TABLE = "fx_rates"  # every day has a rate per currency


@pytest.fixture()
def delivered(simulated: Path, tmp_path: Path) -> Settings:
    """A private copy of one delivered day of the accounting exports."""
    settings = Settings(tmp_path)
    folder = settings.accounting_exports / DAY.isoformat()
    shutil.copytree(Settings(simulated).accounting_exports / DAY.isoformat(), folder)
    return settings


def folder(settings: Settings) -> Path:
    return settings.accounting_exports / DAY.isoformat()


def redeliver(settings: Settings, data: bytes, rows: int | None = None) -> Path:
    """Replace the table's file with ``data`` and list it in the manifest as delivered (checksum, rows)."""
    manifest_path = folder(settings) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(e for e in manifest["files"] if e["table"] == TABLE)
    path = folder(settings) / entry["name"]
    path.write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if rows is not None:
        entry["rows"] = rows
    manifest_path.write_text(json.dumps(manifest))
    return path


def failure(settings: Settings) -> SourceDataError:
    with pytest.raises(SourceDataError) as caught:
        AccountingExtractor(settings.accounting_exports).extract(TABLE, DAY, DAY)
    assert not isinstance(caught.value, SourceUnavailable)  # not transient: the step does not retry it
    return caught.value


def names_file_and_date(error: Exception, path: Path) -> str:
    message = str(error)
    assert str(path) in message and f"business date {DAY}" in message, message
    return message


def original(settings: Settings) -> bytes:
    return (folder(settings) / f"{TABLE}.csv").read_bytes()


def test_a_checksum_mismatch(delivered: Settings) -> None:
    path = folder(delivered) / f"{TABLE}.csv"
    path.write_bytes(original(delivered).replace(b"USD", b"XXX", 1))
    assert "checksum differs from the manifest" in names_file_and_date(failure(delivered), path)


def test_a_missing_manifest(delivered: Settings) -> None:
    manifest = folder(delivered) / "manifest.json"
    manifest.unlink()
    assert "no manifest" in names_file_and_date(failure(delivered), manifest)


def test_a_row_count_that_disagrees_with_the_manifest(delivered: Settings) -> None:
    path = with_five_rows_more_in_its_manifest(delivered)
    assert "rows, the manifest lists" in names_file_and_date(failure(delivered), path)


def test_an_empty_file(delivered: Settings) -> None:
    path = redeliver(delivered, b"")
    assert "the file is empty (0 bytes)" in names_file_and_date(failure(delivered), path)


def test_a_file_that_is_not_utf8_names_its_line(delivered: Settings) -> None:
    lines = original(delivered).decode("utf-8-sig").splitlines(keepends=True)
    lines[2] = lines[2].replace("USD", "US\u00e9", 1).replace("EUR", "EU\u00e9", 1).replace("GBP", "GB\u00e9", 1)
    path = redeliver(delivered, "".join(lines).encode("latin-1"))
    message = names_file_and_date(failure(delivered), path)
    assert "line 3: not UTF-8 (byte 0xE9)" in message


def with_a_surplus_field_on_line_3(settings: Settings) -> Path:
    """The day's file delivered again with one field too many on its third line."""
    lines = original(settings).decode("utf-8-sig").splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\r\n") + ",surplus\r\n"
    return redeliver(settings, "".join(lines).encode())


def with_five_rows_more_in_its_manifest(settings: Settings) -> Path:
    """The day's file delivered again, its manifest listing five rows more than it holds."""
    data = original(settings)
    return redeliver(settings, data, rows=data.count(b"\n") + 5)


def test_a_malformed_line_is_named(delivered: Settings) -> None:
    path = with_a_surplus_field_on_line_3(delivered)
    message = names_file_and_date(failure(delivered), path)
    assert "line 3: not a readable CSV" in message


def test_a_renamed_column_names_the_source_file_not_its_landed_copy(delivered: Settings) -> None:
    data = original(delivered).decode("utf-8-sig")
    header, rest = data.split("\r\n", 1)
    path = redeliver(delivered, (header.replace("usd_per_unit", "rate") + "\r\n" + rest).encode())
    contract = contract_for("accounting", TABLE)
    with pytest.raises(ContractViolation) as caught:
        ingest(delivered, contract, AccountingExtractor(delivered.accounting_exports), DAY, DAY)
    message = names_file_and_date(caught.value, path)
    assert "required column 'usd_per_unit'" in message and "'rate'" in message
    assert message.index(str(path)) < message.index("landed as lake/")  # the source first, its copy after


@pytest.fixture()
def window(simulated: Path, tmp_path: Path) -> Settings:
    """A private copy of three delivered days, DAY in the middle."""
    settings = Settings(tmp_path)
    for offset in (-1, 0, 1):
        day = (DAY + dt.timedelta(days=offset)).isoformat()
        shutil.copytree(Settings(simulated).accounting_exports / day, settings.accounting_exports / day)
    return settings


def window_failure(settings: Settings) -> SourceDataError:
    """The window's days are read as one scan: a bad day's error still names its own file, date and line."""
    with pytest.raises(SourceDataError) as caught:
        AccountingExtractor(settings.accounting_exports).extract(
            TABLE, DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
        )
    return caught.value


def test_a_malformed_line_inside_a_window_is_named(window: Settings) -> None:
    path = with_a_surplus_field_on_line_3(window)
    assert "line 3: not a readable CSV" in names_file_and_date(window_failure(window), path)


def test_a_row_count_inside_a_window_is_checked_per_file(window: Settings) -> None:
    path = with_five_rows_more_in_its_manifest(window)
    assert "rows, the manifest lists" in names_file_and_date(window_failure(window), path)


def test_a_window_with_a_changed_header_reads_as_its_days_one_by_one(window: Settings) -> None:
    """Days of different headers (a column renamed on one) are scanned apart and joined as days read alone."""
    data = original(window).decode("utf-8-sig")
    header, rest = data.split("\r\n", 1)
    redeliver(window, (header.replace("usd_per_unit", "rate") + "\r\n" + rest).encode())
    extractor = AccountingExtractor(window.accounting_exports)
    first, last = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    alone = [extractor.extract(TABLE, day, day) for day in (first, DAY, last)]
    together = extractor.extract(TABLE, first, last)
    assert "rate" in together.columns and "usd_per_unit" in together.columns
    assert together.equals(pl.concat(alone, how="diagonal"))
