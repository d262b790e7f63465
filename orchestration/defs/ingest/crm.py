"""Ingestion assets of the CRM (group `crm`)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ingest import ingest_assets
from quality.contracts import CONTRACTS


def assets(partitions_def: dg.PartitionsDefinition, upstream: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    return ingest_assets([c for c in CONTRACTS.values() if c.system == "crm"], partitions_def, upstream)
