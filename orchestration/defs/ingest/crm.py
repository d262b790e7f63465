"""The crm tables (group `crm`): the CRM API (bulk export or cursor pages); one step loads them all from the lake."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source


@dg.definitions
def crm() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("crm")])
