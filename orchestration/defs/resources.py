"""The resources every asset of the code location shares, configured from the environment, and its executor.

The executor runs a run's steps in its process, one after the other (docs/decisions/0005): every step writes
or reads the one build warehouse, so parallel steps would only queue for its lock.
"""

from __future__ import annotations

import dagster as dg

from orchestration.lib.resources import dbt_process_resource, platform_resource, sources_resource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "platform": platform_resource(),
            "sources": sources_resource(),
            "dbt_process": dbt_process_resource(),
        },
        executor=dg.in_process_executor,
    )
