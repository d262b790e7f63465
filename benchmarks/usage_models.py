"""How fast the usage models build: ``python -m benchmarks.usage_models --scale 0.5 --days 14``.

Simulates a window in a scratch directory, lands its events and ingests its CRM accounts (not timed), builds
the account hierarchy (not timed), then times ``dbt build`` of the product's models and their tests
(stg_product__events+ and stg_product__event_devices+, docs/events.md): events through the model per second
by wall clock and by the dbt process's CPU time, and its peak resident memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from dataops.core.settings import Settings
from dataops.ingest import events
from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import ingest
from dataops.transform.runner import run_dbt
from quality.contracts import CONTRACTS
from source_systems.crm.server import start_in_thread
from source_systems.simulator.config import SimConfig
from source_systems.simulator.run import simulate

CAUTIOUS = ["build", "--indirect-selection", "cautious", "--select"]
PRODUCT_MODELS = ["stg_product__events+", "stg_product__event_devices+"]


def prepare(settings: Settings, scale: float, days: int) -> tuple[str, str]:
    """The window simulated, its events landed (one batch), every source ingested and everything the product's
    models read that does not come from the product built."""
    start = dt.date(2025, 1, 1)
    end = start + dt.timedelta(days=days - 1)
    simulate(settings.sources_dir, end, SimConfig(seed=3, scale=scale, start=start))
    events.ingest_events(settings)
    ingest_sources(settings, start, end)
    window = (start.isoformat(), end.isoformat())
    build_upstream(settings, window)
    return window


def ingest_sources(settings: Settings, start: dt.date, end: dt.date) -> None:
    """Every system of record's window ingested, as the landing and the load do (the CRM served in a thread)."""
    with start_in_thread(settings.crm_db, rate_per_second=1000.0, burst=1000) as crm:
        sources: dict[str, Extractor] = {
            "erp": ErpExtractor(settings.erp_db),
            "crm": CrmExtractor(crm.url, crm.token),
            "accounting": AccountingExtractor(settings.accounting_exports),
        }
        for contract in CONTRACTS.values():
            ingest(settings, contract, sources[contract.system], start, end)


def build_upstream(settings: Settings, window: tuple[str, str]) -> None:
    """Every model but the product's and their downstream (the health score and the customer 360 join the
    customers, their contracts and states); seeds too, tests not (untimed: the tables are what is needed)."""
    upstream = ["build", "--exclude-resource-type", "unit_test", "test", "--exclude", *PRODUCT_MODELS]
    if not run_dbt(upstream, settings, window=window).success:
        raise SystemExit("the models the product's models read did not build")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    settings = Settings(Path(tempfile.mkdtemp(prefix="usage_models_")))
    window = prepare(settings, args.scale, args.days)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run_dbt([*CAUTIOUS, *PRODUCT_MODELS], settings, window=window)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        row = conn.execute("select count(*) from staging.stg_product__events").fetchone()
    n = int(row[0]) if row else 0
    print(
        f"success={result.success} scale={args.scale} days={args.days} events={n:,} wall={wall:.1f}s cpu={cpu:.1f}s "
        f"events/s wall={n / wall:,.0f} cpu={n / max(cpu, 1e-9):,.0f} "
        f"peak RSS of a dbt process={after.ru_maxrss / 1024:.0f} MiB"
    )
    if not result.success:
        raise SystemExit(result.output[-3000:])


if __name__ == "__main__":
    main()
