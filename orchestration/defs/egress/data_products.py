"""The published marts and KPIs as versioned Parquet data products, after every publish (run in the egress
step: step.py)."""

from __future__ import annotations

import dagster as dg

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits
from orchestration.lib.egress import EgressWork, WorkerLog, egress_spec

EXPORTS_KEY = dg.AssetKey(["egress", "data_products"])


def data_products_spec() -> dg.AssetSpec:
    return egress_spec(
        EXPORTS_KEY,
        "Published marts and KPIs as versioned Parquet data products with manifests (data/exports/).",
        {"parquet"},
    )


def data_products_work(settings: Settings, limits: Limits) -> EgressWork:
    """The export, to run on a worker thread; the library is imported here, on the step's thread."""
    from dataops.egress.exports import export_data_products, exports_dir

    def work(log: WorkerLog) -> dg.MaterializeResult:
        report = export_data_products(settings, limits)
        if report.already_exported:
            log.info(f"publish {report.publish_id} is exported already: {len(report.datasets)} data products")
        else:
            log.info(f"{len(report.changed)} of {len(report.datasets)} data products changed")
        return dg.MaterializeResult(
            asset_key=EXPORTS_KEY,
            metadata={
                "publish_id": report.publish_id or "",
                "already_exported": report.already_exported,
                "datasets": len(report.datasets),
                "changed": dg.MetadataValue.json(report.changed),
                "rows": report.rows,
                "path": dg.MetadataValue.path(str(exports_dir(settings))),
            },
        )

    return work
