"""The enterprise model's fixture lives in tests/conftest.py (`built`), shared with the governance tests; here, the
heap the modules that run dbt in process freeze (`frozen_heap`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.conftest import BUILT_DAYS as DAYS


@pytest.fixture(scope="module")
def frozen_heap() -> Iterator[None]:
    """Every object alive when a module's tests start (the ``built`` run's, Dagster's, dbt's) left out of the
    garbage collector's scans until its tests end: each in-process dbt command ends with a full collection
    (``run_dbt``, to release the warehouse), and dbt's own allocations trigger more, each of which walked the
    whole heap of the test worker (about 0.7 CPU-s per command; docs/testing.md). Collected first, so only
    live objects are frozen; unfrozen after, so what died meanwhile is collected then."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


__all__ = ["DAYS"]
