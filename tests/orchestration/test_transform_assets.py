"""The dbt project in Dagster: lineage runs from every source table to the KPIs, dbt tests are checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtProject

from dataops.core.settings import DBT_PROJECT_DIR
from dataops.transform.runner import WaitingDbt
from orchestration.definitions import defs
from orchestration.lib import dbt as dbt_lib
from orchestration.lib import resources
from orchestration.lib.dbt import PROGRESS_EVERY, BuildProgress, dbt_project
from orchestration.lib.resources import DbtProcessResource
from quality.contracts import CONTRACTS
from tests.pipeline import environment

pytestmark = pytest.mark.xdist_group("transform_assets")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> dg.AssetGraph:  # type: ignore[name-defined]
    root: Path = tmp_path_factory.mktemp("empty")
    with environment(DATAOPS_DATA_DIR=str(root), DATAOPS_START_DATE="2025-01-01"):
        return defs().resolve_asset_graph()


def test_lineage_runs_from_every_source_table_to_the_kpis(graph: dg.AssetGraph) -> None:  # type: ignore[name-defined]
    kpi = dg.AssetKey(["kpis", "kpi_daily"])
    todo, upstream = [kpi], set()
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent not in upstream:
                upstream.add(parent)
                todo.append(parent)
    for contract in CONTRACTS.values():
        if contract.table in {"products", "sales_orders", "sales_order_lines", "contacts"}:
            continue  # described in marts, not used by a KPI
        assert dg.AssetKey([contract.system, contract.table]) in upstream, contract.name
    staging = graph.get(dg.AssetKey(["staging", "stg_crm__leads"]))
    assert staging.parent_keys == {dg.AssetKey(["crm", "leads"])}  # dbt source() = the ingestion asset


def test_dbt_models_are_grouped_owned_and_checked(graph: dg.AssetGraph) -> None:  # type: ignore[name-defined]
    kpi = graph.get(dg.AssetKey(["kpis", "kpi_daily"]))
    assert kpi.group_name == "kpis"
    assert kpi.owners == ["team:data-governance"]  # the kpis domain's owner, from registry/domains
    assert graph.get(dg.AssetKey(["marts", "fct_invoices"])).owners == ["team:finance-ops"]
    assert graph.get(dg.AssetKey(["staging", "stg_crm__leads"])).owners == ["team:data-platform"]
    assert "dbt" in kpi.kinds
    assert graph.get(dg.AssetKey(["staging", "stg_erp__customers"])).group_name == "staging"
    assert graph.get(dg.AssetKey(["marts", "fct_contracts"])).group_name == "marts"
    states = dg.AssetKey(["marts", "fct_customer_states_daily"])
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == states}
    assert checks == {"dbt_tests", "customer_states_are_consistent"}  # its dbt tests as one check, and the gate's
    tested = {c.asset_key for c in graph.asset_check_keys if c.name == "dbt_tests"}
    assert dg.AssetKey(["staging", "stg_crm__leads"]) in tested and len(tested) >= 20
    assert kpi.partitions_def is None  # the models follow the loads, not a partition (docs/decisions/0035)


def test_the_metadata_protocol_shows_on_the_assets(graph: dg.AssetGraph) -> None:  # type: ignore[name-defined]
    people = graph.get(dg.AssetKey(["marts", "dim_people"])).metadata
    assert people["classification"] == "confidential"
    assert {"domain", "grain", "key", "retention_days", "refresh_schedule", "access_roles"} <= set(people)
    assert people["pii_columns"].value == ["email"]
    assert set(people["clear_personal_data_roles"].value) == {"marketing_ops", "data_engineer"}
    ledger = graph.get(dg.AssetKey(["marts", "fct_gl_entries"]))
    assert ledger.metadata["classification"] == "restricted" and ledger.tags["classification"] == "restricted"
    assert set(ledger.metadata["access_roles"].value) == {"finance", "executive", "data_engineer"}  # from policy
    customers = graph.get(dg.AssetKey(["marts", "dim_customers"])).metadata
    assert "ultimate parent organisation" in customers["domain_notes"].value  # the sales domain's own file


def test_dbt_assets_show_markdown_their_code_and_row_counts(graph: dg.AssetGraph, tmp_path: Path) -> None:  # type: ignore[name-defined]
    """What the UI shows of a model: its description as Markdown, a link to its SQL, its table's rows."""
    import duckdb

    from dataops.core.warehouse import Limits
    from orchestration.lib.dbt import translator, with_row_counts

    invoices = graph.get(dg.AssetKey(["marts", "fct_invoices"])).metadata
    references = invoices["dagster/code_references"].code_references
    assert any(str(getattr(r, "file_path", "")).endswith("models/marts/fct_invoices.sql") for r in references)
    markdown = "The **ledger**, one row per line:\n\n| column | meaning |\n| --- | --- |\n"
    props = {"name": "fct_x", "description": markdown + "{{ doc('fct_x') }}"}
    assert translator().get_description(props) == markdown.strip()  # Markdown kept whole, dbt's doc() block cut

    warehouse = tmp_path / "build.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(
            "create schema marts; create table marts.t as select * from range(3); create view marts.v as select 1"
        )
    events = [dg.MaterializeResult(asset_key=dg.AssetKey(["marts", name]), metadata={"a": 1}) for name in ("t", "v")]
    counted = {e.asset_key.path[-1]: e.metadata for e in with_row_counts(events, warehouse, Limits()) if e.asset_key}
    assert counted["t"] == {"a": 1, "dagster/row_count": 3} and counted["v"] == {"a": 1}  # a view is not counted


def _result(name: str, index: int, status: str, total: int = 120) -> dict[str, object]:
    """One result line of dbt's structured log, as `dbt build --log-format json` writes it."""
    node = {"unique_id": f"model.dataops.m{index}", "node_status": status}
    data = {"index": index, "total": total, "node_info": node}
    return {"info": {"name": name, "msg": f"{index} of {total} {status.upper()} m{index}"}, "data": data}


def test_the_dbt_step_logs_what_failed_and_a_count_not_every_node() -> None:
    """A build's many successful nodes are on their assets and checks: the step's log (one event-log write per
    line) names each node that did not succeed, and counts the rest every few dozen nodes and at the end."""
    progress = BuildProgress()
    lines = [progress.lines({"info": {"name": "LogStartLine", "msg": "1 of 120 START"}, "data": {}})]
    for index in range(1, 121):
        status = {7: "error", 8: "skipped", 60: "fail", 61: "warn"}.get(index, "pass" if index > 40 else "success")
        lines.append(progress.lines(_result("LogTestResult" if index > 40 else "LogModelResult", index, status)))
    logged = [line for found in lines for line in found]
    assert [line for failed, line in logged if failed] == [
        "7 of 120 ERROR m7",
        "8 of 120 SKIPPED m8",
        "60 of 120 FAIL m60",
        "61 of 120 WARN m61",
    ]
    assert [line for failed, line in logged if not failed] == [
        f"dbt: {done} of 120 nodes done" for done in (PROGRESS_EVERY, 2 * PROGRESS_EVERY, 120)
    ]


def _line(name: str, unique_id: str, status: str = "", **data: object) -> dict[str, object]:
    """One line of dbt's structured log about one node."""
    node = {"unique_id": unique_id, "node_status": status}
    return {"info": {"name": name, "msg": ""}, "data": {"node_info": node, **data}}


def test_a_nodes_events_come_as_dbt_logs_it_a_checks_once_its_last_test_has() -> None:
    """The dbt step's reading of dbt's log (docs/decisions/0080): a materialisation at its node's result line,
    with the row count dbt logged for it (a seed's from its result); a model's check at its last test's line,
    with all of them; a check some of whose tests never ran (skipped) at the end, with those that did."""
    from dataops.governance.metadata import load_manifest
    from orchestration.lib.dbt import BuildEvents, dbt_project, translator

    project = dbt_project()
    manifest = load_manifest(project.manifest_path)
    # a seed's one test (its column rules, decision 0098), a model's three and another model's two
    seed, model, other = "seed.dataops.country_codes", "model.dataops.fct_payments", "model.dataops.fct_contracts"
    nodes = (seed, model, other)
    tests = {uid: [t for t, n in manifest["nodes"].items() if n.get("attached_node") == uid] for uid in nodes}
    assert len(tests[seed]) == 1 and len(tests[model]) >= 2 and len(tests[other]) >= 2
    keys = {uid: dg.AssetKey([manifest["nodes"][uid]["schema"], manifest["nodes"][uid]["name"]]) for uid in nodes}
    build = BuildEvents(manifest, translator(), project, {dg.AssetCheckKey(k, "dbt_tests") for k in keys.values()})

    logged = _line("JinjaLogInfo", model, "executing", msg="marts.fct_payments: 1234 rows")
    assert list(build.events(logged)) == []
    (payments,) = build.events(_line("LogModelResult", model, "success", execution_time=0.5))
    assert payments.asset_key == keys[model] and payments.metadata["dagster/row_count"] == 1234  # type: ignore[index]
    (countries,) = build.events(_line("LogSeedResult", seed, "success", result_message="INSERT 251"))
    assert countries.metadata["dagster/row_count"] == 251  # type: ignore[index]
    (seed_check,) = build.events(_line("LogTestResult", tests[seed][0], "pass"))
    assert isinstance(seed_check, dg.AssetCheckResult) and seed_check.asset_key == keys[seed] and seed_check.passed

    *first, last = tests[model]
    assert [e for test in first for e in build.events(_line("LogTestResult", test, "pass"))] == []
    (check,) = build.events(_line("LogTestResult", last, "fail", num_failures=2))
    assert isinstance(check, dg.AssetCheckResult) and check.asset_key == keys[model] and not check.passed
    ran = {manifest["nodes"][t]["name"] for t in tests[model]}
    assert set(check.metadata["tests"].value) == ran and check.metadata["failing_rows"].value == 2  # type: ignore[arg-type]

    assert list(build.events(_line("LogTestResult", tests[other][0], "pass"))) == []  # the others were skipped
    (partial,) = build.rest()
    assert partial.asset_key == keys[other]
    assert set(partial.metadata["tests"].value) == {manifest["nodes"][tests[other][0]]["name"]}  # type: ignore[arg-type]


def test_a_run_starts_dbt_early_only_for_a_dbt_step_and_ends_it_when_the_step_does_not_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dbt step's ``dataops-dbt`` starts with the run (docs/decisions/0092): not in a run without the dbt
    step; ended at the run's end when a step before dbt failed, and at once when the step has nothing to build."""
    started: list[WaitingDbt] = []

    def waiting(settings: object) -> WaitingDbt:  # a process that waits on its stdin, as dataops-dbt does
        line = [sys.executable, "-c", "import sys; sys.stdin.read()"]
        started.append(WaitingDbt(subprocess.Popen(line, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)))
        return started[-1]

    monkeypatch.setattr(resources, "start_waiting_dbt", waiting)

    @dg.asset
    def load() -> None:
        if fail:
            raise RuntimeError("the load failed")

    @dg.asset(deps=[load])
    def dbt_step(dbt_process: DbtProcessResource) -> None:
        assert started and started[-1].process.poll() is None  # started before the run's first step
        dbt_process.release()  # nothing to build
        assert started[-1].process.poll() is not None

    def run(*assets: dg.AssetsDefinition) -> bool:
        return dg.materialize(
            [load, dbt_step],
            selection=list(assets),
            resources={"dbt_process": DbtProcessResource(data_dir=str(tmp_path))},
            raise_on_error=False,
        ).success

    fail = False
    assert run(load) and started == []
    assert run(load, dbt_step) and len(started) == 1
    fail = True
    assert not run(load, dbt_step) and len(started) == 2
    assert started[-1].process.poll() is not None  # ended with the failed run


def test_what_publishing_waits_for_is_read_once_per_version_of_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate and publishing both ask while the definitions load: the second asks the same manifest, which is
    not read again; a manifest dbt rewrote is."""
    manifest = json.loads(Path(dbt_project().manifest_path).read_text())
    shutil.copy(DBT_PROJECT_DIR / "dbt_project.yml", tmp_path)
    project = DbtProject(project_dir=tmp_path, profiles_dir=DBT_PROJECT_DIR)
    written = Path(project.manifest_path)
    written.parent.mkdir()
    written.write_text(json.dumps(manifest))
    reads: list[Path] = []
    real = dbt_lib.load_manifest
    monkeypatch.setattr(dbt_lib, "load_manifest", lambda path: reads.append(path) or real(path))
    first = dbt_lib.published_model_keys(project)
    kpi_daily = dg.AssetKey(["kpis", "kpi_daily"])
    assert kpi_daily in first
    assert dbt_lib.published_model_keys(project) == first and len(reads) == 1  # the same file: not read again
    manifest["nodes"]["model.dataops.kpi_daily"]["config"]["schema"] = "intermediate"  # no longer published
    written.write_text(json.dumps(manifest))  # as dbt writes it: a new version of the file
    assert dbt_lib.published_model_keys(project) == [key for key in first if key != kpi_daily]
    assert len(reads) == 2
