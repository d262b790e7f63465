"""Ingestion assets of the ERP (group `erp`)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ingest import ingest_source


def assets(partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    return [ingest_source("erp", partitions_def, upstream)]
