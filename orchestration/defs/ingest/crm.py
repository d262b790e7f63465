"""The crm tables (group `crm`): the CRM API, cursor pages; one step for them all."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source
from orchestration.lib.partitions import daily_partitions


@dg.definitions
def crm() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("crm", daily_partitions())])
