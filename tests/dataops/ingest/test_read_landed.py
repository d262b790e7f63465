"""Reading a landed version takes its unknown columns from the files read, not from its manifest: the manifest
also lists the columns of a block that had no rows, and such a block writes no file."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from dataops.ingest import lake, pipeline
from dataops.ingest.connectors.accounting import AccountingExtractor
from quality.contracts import contract_for
from tests.dataops.ingest.conftest import START, Sources

pytestmark = pytest.mark.xdist_group("ingest")


def test_a_column_only_in_a_block_without_rows_is_listed_but_not_read(fresh: Sources) -> None:
    contract = contract_for("accounting", "invoices")
    extractor = AccountingExtractor(fresh.settings.accounting_exports)
    source = "test: two blocks"
    extracted_at, run_id = dt.datetime.now(dt.UTC), "0123456789abcdef"
    writer = lake.VersionWriter(fresh.settings.lake_dir, contract.system, contract.table, extracted_at, run_id)
    rows = pipeline.with_lineage(
        extractor.extract(contract.table, START, START),
        contract.system,
        None,
        extracted_at,
        run_id,
        source,
        contract.written_back,
    )
    assert rows.height > 0  # the first block's day has invoices
    writer.write([START], rows)
    # the second block: the source had added a column by then, and the day has no invoices (no file written)
    later = START + dt.timedelta(days=1)
    writer.write([later], rows.clear().with_columns(pl.lit(None, dtype=pl.String).alias("discount_code")))
    version = writer.commit().version
    assert "discount_code" in version.columns and version.day_file(later) is None

    batch, _, extras, read = pipeline.read_landed(fresh.settings, contract, START, later)

    assert [v.name for v in read] == [version.name]
    assert "discount_code" in extras  # the version's unknown column, reported as the manifest has it
    assert batch.height == rows.height
    assert not batch["_extra"].drop_nulls().str.contains("discount_code").any()
