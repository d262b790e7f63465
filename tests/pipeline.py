"""Test helpers that run the real pipeline on a data directory (Dagster in process, or its pieces)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from dataops.core.settings import Settings, environ
from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.accounting import AccountingExtractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.connectors.erp import ErpExtractor
from dataops.ingest.pipeline import ingest
from orchestration.lib.names import CHURN_MODEL_KEY, EVENTS_KEY
from quality.contracts import CONTRACTS
from source_systems.crm.server import RunningServer


@contextmanager
def environment(**values: str) -> Iterator[None]:
    with environ(values):
        yield


@dataclass
class PipelineResult:
    """A landing run and the build run that followed it, read like one ``ExecuteInProcessResult``: ``run_id``
    is the build's (its dbt artefacts are under that name)."""

    landing: dg.ExecuteInProcessResult | None
    build: dg.ExecuteInProcessResult | None

    @property
    def runs(self) -> list[dg.ExecuteInProcessResult]:
        return [r for r in (self.landing, self.build) if r is not None]

    @property
    def success(self) -> bool:
        return bool(self.runs) and all(r.success for r in self.runs)

    @property
    def run_id(self) -> str:
        return self.runs[-1].run_id

    @property
    def all_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.runs for e in r.all_events]

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.runs for e in r.get_asset_materialization_events()]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [e for r in self.runs for e in r.get_asset_check_evaluations()]


def definitions_loaded_once() -> Callable[[], dg.Definitions]:
    """A ``definitions`` for ``run_job`` that loads the platform's definitions at its first call (in that run's
    environment) and gives the same to every later call: the runs of a test on one data directory load them once
    (each load takes a good part of a second)."""

    @functools.cache
    def load() -> dg.Definitions:
        from orchestration.definitions import defs

        return defs()

    return load


def run_job(
    data_dir: Path,
    start: dt.date,
    end: dt.date,
    selection: str | dg.AssetSelection | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = False,
    tags: dict[str, str] | None = None,
    run_config: dict[str, object] | None = None,
    definitions: Callable[[], dg.Definitions] | None = None,
    **env: str,
) -> PipelineResult:
    """Land [start, end] in one run, then build what the selection holds besides the landing, as the
    platform's daily job and the build that its sensor starts do (docs/decisions/0035).

    ``definitions`` loads the platform's definitions (``orchestration.definitions.defs`` if None), called
    within the run's environment: a test that runs many times on one data directory loads them once."""
    from application.mock_sources import crm_environment
    from orchestration.definitions import defs
    from orchestration.defs.automation.sensors import build_request
    from orchestration.lib.names import EXTRACTS_KEY

    with environment(DATAOPS_DATA_DIR=str(data_dir), **env), crm_environment(Settings(data_dir)):
        loaded = (definitions or defs)()
        if selection is None:  # egress has its own tests; the rest need not pay for it on every run
            # nor the churn model's retrain (its own job, months of history), nor the event stream (its own job)
            selection = (
                dg.AssetSelection.all()
                - dg.AssetSelection.groups("egress")
                - dg.AssetSelection.assets(CHURN_MODEL_KEY, EVENTS_KEY)
            )
        chosen = dg.AssetSelection.from_coercible(selection) if isinstance(selection, str) else selection
        keys = chosen.resolve(loaded.resolve_asset_graph())
        landing_keys = keys & {EXTRACTS_KEY}
        built_keys = keys - {EXTRACTS_KEY}
        jobs = [dg.define_asset_job("test_landing", selection=dg.AssetSelection.assets(EXTRACTS_KEY))]
        if built_keys:
            jobs.append(dg.define_asset_job("test_build", selection=chosen - dg.AssetSelection.assets(EXTRACTS_KEY)))
        merged = dg.Definitions.merge(loaded, dg.Definitions(jobs=jobs))
        window = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        }

        def execute(used: dg.DagsterInstance) -> PipelineResult:
            landing = None
            if landing_keys:
                landing = merged.resolve_job_def("test_landing").execute_in_process(
                    run_config={k: v for k, v in (run_config or {}).items() if k == "resources"},  # no build op's
                    instance=used,
                    tags={**window, **(tags or {})},
                    raise_on_error=raise_on_error,
                )
                if not landing.success or not built_keys:
                    return PipelineResult(landing, None)
            build_tags = dict(tags or {})
            if landing is not None:
                build_tags |= build_request(used.get_run_by_id(landing.run_id)).tags  # type: ignore[arg-type]
            build = merged.resolve_job_def("test_build").execute_in_process(
                run_config=run_config, instance=used, tags=build_tags, raise_on_error=raise_on_error
            )
            return PipelineResult(landing, build)

        if instance is not None:
            return execute(instance)
        with dg.DagsterInstance.ephemeral() as ephemeral:
            return execute(ephemeral)


def extractors(settings: Settings, crm: RunningServer) -> dict[str, Extractor]:
    return {
        "erp": ErpExtractor(settings.erp_db),
        "crm": CrmExtractor(crm.url, crm.token),
        "accounting": AccountingExtractor(settings.accounting_exports),
    }


def ingest_days(settings: Settings, crm: RunningServer, start: dt.date, end: dt.date) -> None:
    sources = extractors(settings, crm)
    for contract in CONTRACTS.values():
        ingest(settings, contract, sources[contract.system], start, end)


def tables(build_db: Path, schemas: tuple[str, ...]) -> dict[str, list[tuple[object, ...]]]:
    """Every table of the given schemas, sorted row for row."""
    out = {}
    with duckdb.connect(str(build_db), read_only=True) as conn:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            f"where table_schema in ({', '.join('?' * len(schemas))}) and table_type = 'BASE TABLE' order by 1, 2",
            list(schemas),
        ).fetchall()
        for schema, table in names:
            out[f"{schema}.{table}"] = sorted(conn.execute(f"select * from {schema}.{table}").fetchall(), key=repr)
    return out
