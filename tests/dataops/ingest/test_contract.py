"""The contract reads every timestamp form the sources write, each value with the first format that reads it."""

from __future__ import annotations

import datetime as dt

import polars as pl

from dataops.ingest.contract import apply_contract
from quality.contracts import CONTRACTS

FORMS = {
    "2025-02-03T04:05:06.789Z": dt.datetime(2025, 2, 3, 4, 5, 6, 789000, dt.UTC),
    "2025-02-03T04:05:06Z": dt.datetime(2025, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    "2025-02-03T05:05:06.5+01:00": dt.datetime(2025, 2, 3, 4, 5, 6, 500000, dt.UTC),
    "2025-02-02T23:05:06-05:00": dt.datetime(2025, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    "2025-02-03 04:05:06.25": dt.datetime(2025, 2, 3, 4, 5, 6, 250000, dt.UTC),
    " 2025-02-03 04:05:06 ": dt.datetime(2025, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    "2025-02-03T04:05:06": dt.datetime(2025, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
}


def test_every_timestamp_form_is_read_and_an_unreadable_one_is_quarantined() -> None:
    contract = CONTRACTS["crm.lead_history"]
    stamps = [*FORMS, "03/02/2025 04:05"]
    n = len(stamps)
    batch = pl.DataFrame(
        {
            "Id": [f"H{i}" for i in range(n)],
            "LeadId": ["L1"] * n,
            "Field": ["Score"] * n,
            "OldValue": [None] * n,
            "NewValue": ["1"] * n,
            "CreatedDate": stamps,
            "SystemModstamp": list(reversed(stamps)),  # each form among others, in another order
            "_system": ["crm"] * n,
            "_extracted_at": [dt.datetime(2025, 2, 4, tzinfo=dt.UTC)] * n,
            "_run_id": ["run"] * n,
            "_partition": [dt.date(2025, 2, 3)] * n,
            "_record_hash": [f"h{i}" for i in range(n)],
            "_source": ["crm:lead_history"] * n,
        }
    )
    result = apply_contract(contract, batch, [c for c in batch.columns if not c.startswith("_")])
    read = dict(zip(result.valid["Id"], result.valid["CreatedDate"], strict=True))
    assert read == {f"H{i}": instant for i, instant in enumerate(FORMS.values()) if i != 0}
    assert result.quarantined["_key"].to_list() == ["H0", f"H{n - 1}"]
    reasons = result.quarantined["_reasons"].to_list()
    assert reasons[0] == ["SystemModstamp: cannot read '03/02/2025 04:05' as Datetime(time_unit='us', time_zone='UTC')"]
    assert reasons[1] == ["CreatedDate: cannot read '03/02/2025 04:05' as Datetime(time_unit='us', time_zone='UTC')"]
