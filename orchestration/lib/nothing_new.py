"""Whether a landing run brought nothing new, so that no build need follow it (docs/decisions/0057).

The lake and warehouse comparisons live in the library (``dataops.publish.unchanged``); this adds what only the
Dagster instance knows. The warehouse is read only when a day of the window was landed before (a new day is
new data: the usual daily landing never opens it) and no other run is in progress, whose steps may be writing
it (a reader's lock would refuse them the file); the read is a few queries, the comparisons happen after it.
A changed definition or policy is not new data: adopting a definition rebuilds by itself, and ``build_job``
applies anything else. Whatever cannot be read means "build".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import duckdb

from dataops.core.settings import Settings
from dataops.core.warehouse import Limits, connect
from dataops.publish.unchanged import built_and_published, held, landed_before, raw_layer_holds_it
from orchestration.lib.names import NOTHING_NEW_TAG, PUBLISHED_DAYS_KEY
from quality.contracts import Contract

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def why_build(
    settings: Settings,
    limits: Limits,
    instance: dg.DagsterInstance,
    run_id: str,
    window: tuple[dt.date, dt.date],
    landed: Sequence[Contract],
) -> str | None:
    """Why a build must follow this landing run, or None when it brought nothing new (see the module)."""
    for contract in landed:
        reason = landed_before(settings, contract, run_id)
        if reason is not None:
            return reason
    others = [
        r for r in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)) if r.dagster_run.run_id != run_id
    ]
    if others:
        return f"run {others[0].dagster_run.run_id} is in progress: the warehouse is not read beside it"
    try:
        with connect(settings.build_db, read_only=True, limits=limits) as conn:
            state = held(conn)
    except (duckdb.Error, OSError) as exc:  # no warehouse yet, or one a process outside Dagster holds
        return f"the warehouse cannot say what it holds ({type(exc).__name__})"
    reason = raw_layer_holds_it(settings, state, run_id, landed) or built_and_published(settings, state)
    if reason is not None:
        return reason
    published = instance.get_materialized_partitions(PUBLISHED_DAYS_KEY)
    days = [window[0] + dt.timedelta(days=n) for n in range((window[1] - window[0]).days + 1)]
    missing = [d for d in days if d.isoformat() not in published]
    return f"{missing[0]} is not in the published KPIs" if missing else None


def nothing_new(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a landing run recorded that it brought nothing new (no build follows it).

    Read from the run's tag rows, not its stored body (``run.tags``): Dagster's ``add_run_tags`` rewrites the
    body from what it read just before, so a heartbeat tagged at the same moment (``application/runs.py``)
    can write back a body without this tag; the tag rows keep it (seen in CI: a build followed a landing whose
    metadata said nothing new)."""
    tagged = dg.RunsFilter(run_ids=[run_id], tags={NOTHING_NEW_TAG: "true"})
    return bool(instance.get_run_records(filters=tagged, limit=1))
