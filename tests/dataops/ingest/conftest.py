"""Ingestion fixtures: a 30-day tiny simulation, ingested once per session as the baseline."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dataops.core.settings import Settings
from dataops.core.warehouse import held_open
from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor, RetryPolicy
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import IngestOptions, IngestReport, ingest
from quality.contracts import CONTRACTS
from source_systems.crm.server import RunningServer, start_in_thread
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate

START = dt.date(2025, 2, 1)
END = START + dt.timedelta(days=29)
FAST = RetryPolicy(max_attempts=6, initial_backoff=0.01, max_backoff=0.5, timeout=2.0)
# A little more of every bogus kind than the default, so each kind shows up in 30 tiny days.
RATES = DirtRates(orphan_fk=0.01, null_required=0.01, bad_amount=0.01)


@dataclass
class Sources:
    settings: Settings
    crm: RunningServer

    def extractors(self, policy: RetryPolicy = FAST) -> dict[str, Extractor]:
        return {
            "erp": ErpExtractor(self.settings.erp_db),
            "crm": CrmExtractor(self.crm.url, self.crm.token, page_size=200, policy=policy),
            "accounting": AccountingExtractor(self.settings.accounting_exports),
        }


def ingest_all(
    sources: Sources,
    start: dt.date = START,
    end: dt.date = END,
    options: IngestOptions | None = None,
    policy: RetryPolicy = FAST,
) -> dict[str, IngestReport]:
    """Every table, as a build run loads them: the warehouse held open for all (each table still has its own
    connection and transaction), not opened and checkpointed once per table."""
    extractors = sources.extractors(policy)
    limits = (options or IngestOptions()).limits
    with held_open(sources.settings.build_db, limits):
        return {
            name: ingest(sources.settings, c, extractors[c.system], start, end, options=options)
            for name, c in CONTRACTS.items()
        }


def snapshot(build_db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every raw and quarantine table, row for row, leaving out the lineage that names the run."""
    out = {}
    with duckdb.connect(str(build_db), read_only=True) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'quarantine') order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            rel = conn.table(f"{schema}.{table}")
            cols = [c for c in rel.columns if c not in {"_run_id", "_extracted_at", "_quarantined_at"}]
            rows = conn.execute(f"select {', '.join(cols)} from {schema}.{table}").fetchall()
            out[f"{schema}.{table}"] = sorted(rows, key=repr)
    return out


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ingest-sim")
    # the systems of record only: the product's event stream is not ingested here
    config = SimConfig(seed=5, scale=0.05, start=START, dirt=RATES, product_events=False)
    simulate(Settings(root).sources_dir, END, config)
    return root


@pytest.fixture(scope="session")
def baseline(simulated: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    """The 30 days ingested once, read-only for tests (copy it to change it)."""
    root = tmp_path_factory.mktemp("ingest-baseline")
    shutil.copytree(simulated, root, dirs_exist_ok=True)
    settings = Settings(root)
    with start_in_thread(settings.crm_db, rate_per_second=1000, burst=1000) as crm:
        sources = Sources(settings, crm)
        sources.reports = ingest_all(sources)  # type: ignore[attr-defined]
        yield sources


@pytest.fixture()
def fresh(simulated: Path, tmp_path: Path) -> Iterator[Sources]:
    """The simulated sources with nothing ingested yet, in a private directory."""
    shutil.copytree(simulated, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    with start_in_thread(settings.crm_db, rate_per_second=1000, burst=1000) as crm:
        yield Sources(settings, crm)


@pytest.fixture()
def ingested_copy(baseline: Sources, tmp_path: Path) -> Iterator[Sources]:
    """A private copy of the ingested baseline, to re-run things on."""
    shutil.copytree(baseline.settings.data_dir, tmp_path, dirs_exist_ok=True)
    settings = Settings(tmp_path)
    with start_in_thread(settings.crm_db, rate_per_second=1000, burst=1000) as crm:
        yield Sources(settings, crm)
