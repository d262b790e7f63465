"""What the egress assets share: after every publish, and reading only the published analyst warehouse, so
they hold no pool and never wait for, or block, a writer. They are independent of each other, so one step
runs the selected ones side by side on threads (docs/decisions/0096)."""

from __future__ import annotations

import contextlib
import logging
import queue
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import dagster as dg

from orchestration.lib.names import ANALYTICS_KEY, PLATFORM_OWNER

MAX_WORKERS = 3  # one per egress asset


def egress_spec(key: dg.AssetKey, description: str, kinds: set[str]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=description,
        kinds=kinds,
        group_name="egress",
        owners=[PLATFORM_OWNER],
        deps=[ANALYTICS_KEY],
        tags={"layer": "egress"},
    )


WorkerEvent = tuple[int, str] | Future[dg.MaterializeResult]  # a worker's log line (level, message), or a finished work


class WorkerLog:
    """A worker thread's log: its lines go on the step's queue and the step's own thread writes them to
    Dagster's log (``context.log`` is the step's, not to be called from other threads)."""

    def __init__(self, lines: queue.SimpleQueue[WorkerEvent]) -> None:
        self._lines = lines

    def info(self, message: str) -> None:
        self._lines.put((logging.INFO, message))


EgressWork = Callable[[WorkerLog], dg.MaterializeResult]  # one asset's materialisation, run on a worker thread


def run_side_by_side(
    context: dg.AssetExecutionContext, works: Mapping[dg.AssetKey, EgressWork]
) -> Iterator[dg.MaterializeResult]:
    """Run each work on its own thread and yield its result as it ends; then fail naming each that failed.

    The step's thread only waits on one queue: the workers' log lines, written as they come (the CRM sync's
    progress shows live), and each finished work (its done callback puts it there after its last line). One
    failure stops none of the others: what succeeded is materialised before the step fails.
    """
    events: queue.SimpleQueue[WorkerEvent] = queue.SimpleQueue()
    log = WorkerLog(events)
    failed: dict[dg.AssetKey, BaseException] = {}
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, max(len(works), 1)), thread_name_prefix="egress") as pool:
        keys: dict[Future[dg.MaterializeResult], dg.AssetKey] = {}
        for key, work in works.items():
            future = pool.submit(work, log)
            keys[future] = key
            future.add_done_callback(events.put)
        pending = set(keys)
        while pending:
            event = _next(events)
            if not isinstance(event, Future):
                context.log.log(*event)
                continue
            pending.discard(event)
            error = event.exception()
            if error is None:
                yield event.result()
            else:
                failed[keys[event]] = error
                context.log.error(f"{keys[event].to_user_string()} failed: {_named(error)}")
    if failed:
        raise _failure(failed) from next(iter(failed.values()))


def _next(events: queue.SimpleQueue[WorkerEvent]) -> WorkerEvent:
    """The next event, waited for in short spells: a wait without end would hold off a Ctrl-C that the kernel
    hands to a worker thread until the next event (as the dbt step's reader, dataops/transform/runner.py)."""
    while True:
        with contextlib.suppress(queue.Empty):
            return events.get(timeout=0.2)


def _named(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _failure(failed: Mapping[dg.AssetKey, BaseException]) -> dg.Failure:
    """The step's failure: each failed asset and why in its description, each traceback in its metadata (its
    raiser chains the first error, which Dagster shows as the step's root cause)."""
    return dg.Failure(
        description="; ".join(f"{k.to_user_string()} failed: {_named(e)}" for k, e in failed.items()),
        metadata={
            k.to_user_string(): dg.MetadataValue.text("".join(traceback.format_exception(e))) for k, e in failed.items()
        },
    )
