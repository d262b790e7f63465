"""Ingestion assets of the CRM (group `crm`)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ingest import ingest_source


def assets(partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    return [ingest_source("crm", partitions_def, upstream)]
