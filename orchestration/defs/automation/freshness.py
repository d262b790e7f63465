"""Is yesterday in what analysts have? A check on the published warehouse, run with every publish.

Dagster's freshness policy on the published assets (orchestration/definitions.py) says whether they were
published today before the deadline; this check says whether what was published reaches yesterday, which a
backfill of an old range published in the morning would not. Both judge by the registry's
``freshness.published_by_hour_utc``, like `dataops status` and the dashboard.

No ``from __future__ import annotations`` here: Dagster reads the ``context`` annotation at definition time.
"""

import datetime as dt

import dagster as dg

from dataops.publish.status import freshness
from orchestration.lib.names import ANALYTICS_KEY
from orchestration.lib.resources import PlatformResource


@dg.asset_check(
    asset=ANALYTICS_KEY,
    name="yesterday_published",
    description="The published KPIs reach yesterday, or today's publishing deadline has not passed yet.",
)
def yesterday_published(platform: PlatformResource) -> dg.AssetCheckResult:
    judged = freshness(platform.settings, dt.datetime.now(dt.UTC))
    return dg.AssetCheckResult(
        passed=judged.is_fresh,
        severity=dg.AssetCheckSeverity.WARN,
        description=judged.summary,
        metadata={"published_through": str(judged.as_of or ""), "target": judged.target},
    )
