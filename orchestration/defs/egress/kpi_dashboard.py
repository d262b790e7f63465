"""The offline KPI dashboard, rebuilt from the published analyst warehouse after every publish.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import dagster as dg

from orchestration.lib.egress import egress_asset_args
from orchestration.lib.instance import failed_checks
from orchestration.lib.resources import PlatformResource

DASHBOARD_KEY = dg.AssetKey(["egress", "kpi_dashboard"])


@dg.definitions
def kpi_dashboard() -> dg.Definitions:
    @dg.asset(
        key=DASHBOARD_KEY,
        description="The offline KPI dashboard (one self-contained HTML file) rebuilt from the published warehouse.",
        kinds={"html", "plotly"},
        **egress_asset_args(),
    )
    def dashboard(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        from dataops.egress.dashboard import refresh_dashboard

        checks = failed_checks(context.instance, context.run.run_id)
        path, written = refresh_dashboard(platform.settings, checks=checks)
        context.log.info(
            f"dashboard written to {path}" if written else f"dashboard unchanged: {path} shows this publish and status"
        )
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size, "written": written}
        )

    return dg.Definitions(assets=[dashboard])
