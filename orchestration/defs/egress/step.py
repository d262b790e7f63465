"""The egress assets in one step: the CRM sync, the data products and the dashboard read only the published
analyst file and not each other's output, so the selected ones run side by side on threads (most of the CRM
sync waits on HTTP, most of the exports in DuckDB); each stays an asset of its own (docs/decisions/0096).

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

from collections.abc import Iterator

import dagster as dg

from orchestration.defs.egress.crm_account_sync import CRM_SYNC_KEY, crm_sync_spec, crm_sync_work
from orchestration.defs.egress.data_products import EXPORTS_KEY, data_products_spec, data_products_work
from orchestration.defs.egress.kpi_dashboard import DASHBOARD_KEY, dashboard_spec, dashboard_work
from orchestration.lib.egress import EgressWork, run_side_by_side
from orchestration.lib.instance import failed_checks
from orchestration.lib.resources import PlatformResource, SourcesResource


@dg.definitions
def egress_step() -> dg.Definitions:
    @dg.multi_asset(name="egress", specs=[crm_sync_spec(), data_products_spec(), dashboard_spec()], can_subset=True)
    def egress(
        context: dg.AssetExecutionContext, platform: PlatformResource, sources: SourcesResource
    ) -> Iterator[dg.MaterializeResult]:
        # one Limits for every reader: DuckDB refuses a second config for a file open in the process
        settings, limits, selected = platform.settings, platform.limits, context.selected_asset_keys
        works: dict[dg.AssetKey, EgressWork] = {}
        if CRM_SYNC_KEY in selected:
            works[CRM_SYNC_KEY] = crm_sync_work(settings, limits, sources.crm_base_url, sources.crm_token)
        if EXPORTS_KEY in selected:
            works[EXPORTS_KEY] = data_products_work(settings, limits)
        if DASHBOARD_KEY in selected:
            works[DASHBOARD_KEY] = dashboard_work(settings, limits, failed_checks(context.instance, context.run.run_id))
        yield from run_side_by_side(context, works)

    return dg.Definitions(assets=[egress])
