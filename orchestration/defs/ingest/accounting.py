"""The accounting tables (group `accounting`): the daily export folder and its manifest; one step loads them
all from the lake."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import ingest_source


@dg.definitions
def accounting() -> dg.Definitions:
    return dg.Definitions(assets=[ingest_source("accounting")])
