"""The erp tables (group `erp`): SQL by updated_at watermark; one step loads them all from the lake."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source


@dg.definitions
def erp() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("erp")])
