"""The published marts and KPIs as versioned Parquet data products, after every publish.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import dagster as dg

from orchestration.lib.egress import egress_asset_args
from orchestration.lib.resources import PlatformResource

EXPORTS_KEY = dg.AssetKey(["egress", "data_products"])


@dg.definitions
def data_products() -> dg.Definitions:
    @dg.asset(
        key=EXPORTS_KEY,
        description="Published marts and KPIs as versioned Parquet data products with manifests (data/exports/).",
        kinds={"parquet"},
        **egress_asset_args(),
    )
    def products(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from dataops.egress.exports import export_data_products, exports_dir

        report = export_data_products(platform.settings, platform.limits)
        if report.already_exported:
            context.log.info(f"publish {report.publish_id} is exported already: {len(report.datasets)} data products")
        else:
            context.log.info(f"{len(report.changed)} of {len(report.datasets)} data products changed")
        return dg.MaterializeResult(
            metadata={
                "publish_id": report.publish_id or "",
                "already_exported": report.already_exported,
                "datasets": len(report.datasets),
                "changed": dg.MetadataValue.json(report.changed),
                "rows": report.rows,
                "path": dg.MetadataValue.path(str(exports_dir(platform.settings))),
            }
        )

    return dg.Definitions(assets=[products])
