"""The one ``Definitions`` of the code location, built from small modules per concern."""

from __future__ import annotations

import dagster as dg

from dataops.settings import Settings
from orchestration.defs import transform
from orchestration.defs.ingest import accounting, crm, erp
from orchestration.partitions import daily_partitions
from orchestration.resources import platform_resource, sources_resource


@dg.definitions
def defs() -> dg.Definitions:
    partitions = daily_partitions(Settings.from_env())
    ingest = [*erp.assets(partitions), *crm.assets(partitions), *accounting.assets(partitions)]
    return dg.Definitions(
        assets=[*ingest, *transform.assets(partitions)],
        resources={"platform": platform_resource(), "sources": sources_resource(), "dbt": transform.dbt_resource()},
        executor=dg.in_process_executor,
    )
