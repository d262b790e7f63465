"""The simulated accounting system and the ingestion contract agree on when the release that renamed
``invoices.amount`` took effect, whatever window is simulated: windows starting before, on and after it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dataops.core.settings import Settings
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.pipeline import ingest
from quality.contracts import contract_for
from quality.contracts.accounting import RENAMING_RELEASE
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

RELEASE = RENAMING_RELEASE.date
DAYS = 24  # past the 20 days after its start at which the old simulator renamed the column


def _header(settings: Settings, day: dt.date) -> list[str]:
    path = settings.accounting_exports / day.isoformat() / "invoices.csv"
    return path.read_text(encoding="utf-8-sig").splitlines()[0].split(",")


@pytest.mark.parametrize(
    "start",
    [
        dt.date(2023, 12, 1),  # long before: the old simulator renamed 20 days after the start, unannounced
        RELEASE - dt.timedelta(days=3),  # the window crosses the release
        RELEASE,
        RELEASE + dt.timedelta(days=40),
    ],
    ids=["long-before", "crossing", "on", "after"],
)
def test_any_simulated_window_ingests_through_the_contract(start: dt.date, tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    end = start + dt.timedelta(days=DAYS - 1)
    simulate(settings.sources_dir, end, SimConfig(seed=3, scale=0.02, start=start, product_events=False))
    for day in (start + dt.timedelta(days=i) for i in range(DAYS)):
        header = _header(settings, day)
        renamed = day >= RELEASE
        assert ("gross_amount" in header, "amount" in header, "po_number" in header) == (renamed, not renamed, renamed)
    report = ingest(
        settings, contract_for("accounting", "invoices"), AccountingExtractor(settings.accounting_exports), start, end
    )
    assert report.loaded_rows == report.landed_rows - report.quarantined_rows
    assert report.extra_columns == (["po_number"] if end >= RELEASE else [])
