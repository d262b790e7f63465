"""The accounting tables (group `accounting`): the daily export folder and its manifest; one step for them all."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source
from orchestration.lib.partitions import daily_partitions


@dg.definitions
def accounting() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("accounting", daily_partitions())])
