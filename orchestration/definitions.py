"""The one ``Definitions`` of the code location, built from small modules per concern."""

from __future__ import annotations

import dagster as dg

from dataops.core.settings import Settings
from orchestration.defs import automation, egress, publish, quality, transform
from orchestration.defs.ingest import accounting, crm, erp
from orchestration.partitions import daily_partitions
from orchestration.resources import platform_resource, sources_resource


@dg.definitions
def defs() -> dg.Definitions:
    partitions = daily_partitions(Settings.from_env())
    sources_upstream: list[dg.AssetKey] = []
    ingest = [
        *erp.assets(partitions, sources_upstream),
        *crm.assets(partitions, sources_upstream),
        *accounting.assets(partitions, sources_upstream),
    ]
    model = transform.assets(partitions)
    published_inputs = [k for k in model[0].keys if k.path[0] in {"marts", "kpis"}]
    core = dg.Definitions(
        assets=[
            *ingest,
            *model,
            *publish.assets(partitions, published_inputs),
            *egress.assets(partitions),
        ],
        asset_checks=quality.checks(),
        resources={"platform": platform_resource(), "sources": sources_resource(), "dbt": transform.dbt_resource()},
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(core, automation.definitions(partitions))
