"""How often the platform's processes look for reference cycles.

CPython's cyclic collector runs a young-generation pass every 700 new container objects. dbt's parse and run,
and a Dagster run's events, allocate millions of objects that reference counting frees anyway, so each of the
platform's processes spent about a tenth of its CPU in the collector: about 2 CPU-s of a small `dataops run`
and 2 of its dbt process, for a few objects actually in cycles. A pass every 100,000 new objects halves that
(docs/decisions/0094); the older generations keep CPython's ratios, so a long-lived process (a code server, the
query gateway) still collects its old cycles. Only the platform's own entry points call this: the command
line, the dbt process and the code location's processes. A library must not retune the collector of whoever
imports it.
"""

from __future__ import annotations

import gc

# objects allocated between two young-generation passes; then CPython's own ratios for the older generations
THRESHOLDS = (100_000, 10, 10)


def collect_less_often() -> None:
    """Set this process's collector to the platform's thresholds."""
    gc.set_threshold(*THRESHOLDS)
