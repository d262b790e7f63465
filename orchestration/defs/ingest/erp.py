"""The erp tables (group `erp`): SQL by updated_at watermark; one step for them all."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source
from orchestration.lib.partitions import daily_partitions


@dg.definitions
def erp() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("erp", daily_partitions())])
