"""The offline KPI dashboard, rebuilt from the published analyst warehouse after every publish (run in the
egress step: step.py)."""

from __future__ import annotations

import dagster as dg

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits
from dataops.publish.status import CheckSummary
from orchestration.lib.egress import EgressWork, WorkerLog, egress_spec

DASHBOARD_KEY = dg.AssetKey(["egress", "kpi_dashboard"])


def dashboard_spec() -> dg.AssetSpec:
    return egress_spec(
        DASHBOARD_KEY,
        "The offline KPI dashboard (one self-contained HTML file) rebuilt from the published warehouse.",
        {"html", "plotly"},
    )


def dashboard_work(settings: Settings, limits: Limits, checks: CheckSummary) -> EgressWork:
    """The page, to run on a worker thread; the library is imported here, on the step's thread, and the
    run's failed checks (which only the Dagster instance knows) are read by the step before."""
    from dataops.egress.dashboard import refresh_dashboard

    def work(log: WorkerLog) -> dg.MaterializeResult:
        path, written = refresh_dashboard(settings, checks=checks, limits=limits)
        log.info(
            f"dashboard written to {path}" if written else f"dashboard unchanged: {path} shows this publish and status"
        )
        return dg.MaterializeResult(
            asset_key=DASHBOARD_KEY,
            metadata={"path": dg.MetadataValue.path(str(path)), "bytes": path.stat().st_size, "written": written},
        )

    return work
