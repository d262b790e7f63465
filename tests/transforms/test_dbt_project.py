"""The dbt project itself: its data tests and unit tests pass, and every model is documented."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from dataops.core.settings import DBT_PROJECT_DIR, Settings
from dataops.ingest.lake import PER_EXTRACTION
from dataops.transform.runner import DbtResult, prepare_manifest, run_dbt
from quality.contracts import CONTRACTS
from registry.loader import dbt_vars, domain_owners, load_registry
from tests.transforms.test_incremental_staging import copy_of, scalar

pytestmark = pytest.mark.xdist_group("built")

REQUIRED_META = ("domain", "classification")
CLASSIFICATIONS = {"public", "internal", "confidential", "restricted"}
PII_HINTS = ("email", "first_name", "last_name", "phone")


def statuses_of_tests(result: DbtResult) -> dict[str, str]:
    """The statuses of the tests a dbt command ran (not of its on-run-end hook: macros/rows_untested.sql)."""
    return {node: status for node, status in result.statuses().items() if not node.startswith("operation.")}


@pytest.fixture(scope="module")
def tested(built: Path) -> DbtResult:
    """Every test of the project, unit and data tests, in one dbt command on the built warehouse (a command each
    paid dbt's start-up and parse twice for the same project)."""
    return run_dbt(["test"], Settings(built), in_process=True)


def of_kind(result: DbtResult, unit: bool) -> DbtResult:
    """The results of the unit tests only, or of every other node (the data tests, the on-run-end hook)."""
    nodes = [r for r in result.results if r["unique_id"].startswith("unit_test.") == unit]
    passed = all(r["status"] in {"pass", "success"} for r in nodes)  # its own nodes, not the other kind's
    return DbtResult(success=passed and bool(nodes), output=result.output, results=nodes)


def test_unit_tests_of_every_schema_rule_and_state_edge_case_pass(tested: DbtResult) -> None:
    result = of_kind(tested, unit=True)
    assert result.success, result.output[-3000:]
    names = {r["unique_id"].split(".")[-1] for r in result.results}
    assert {
        "hierarchy_rolls_every_division_and_region_up_to_the_parent",
        "bill_to_entities_resolve_by_reference_then_tax_id_then_name",
        "customer_states_cover_every_edge_case",
        "a_won_back_customer_is_new_again_but_resuming_is_not",
        "the_crm_status_does_not_make_an_mql",
        "the_same_person_as_two_leads_counts_once",
        "each_period_judges_leads_by_its_own_threshold",
        "a_funnel_day_counts_under_its_own_period",
        "from_its_date_a_state_rule_judges_the_day_before_too",
        "a_rerun_of_an_older_day_does_not_override_a_newer_days_copy",
        "a_record_changed_twice_in_one_day_keeps_the_same_copy_on_every_run",
    } <= names
    assert set(statuses_of_tests(result).values()) == {"pass"}


def test_data_tests_on_keys_and_states_pass(tested: DbtResult) -> None:
    result = of_kind(tested, unit=False)
    assert result.success, result.output[-3000:]
    kinds = {r["unique_id"].split(".")[2].split("_")[0] for r in result.results if r["unique_id"].startswith("test.")}
    assert kinds == {"column", "relationships"}  # column_rules (not null, accepted values, unique: 0095, 0098)
    assert len(statuses_of_tests(result)) >= 86 and set(statuses_of_tests(result).values()) == {"pass"}


def test_the_data_tests_read_tables_not_stacks_of_views(built: Path, manifest: dict) -> None:  # type: ignore[type-arg]
    """Every model a data test reads is a table in the warehouse (a view re-ran its whole stack over all history
    for each test: decision 0062), except over the product's event lake: the models reading the lake stay
    views rather than copy it into the warehouse on every build (those above them are not judged here)."""
    parents = manifest["parent_map"]

    def reads_the_lake(unique_id: str) -> bool:
        return any(p.startswith("source.dataops.product.") for p in parents.get(unique_id, []))

    def over_the_lake(unique_id: str) -> bool:
        return reads_the_lake(unique_id) or any(over_the_lake(p) for p in parents.get(unique_id, []))

    tested = {
        parent
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        for parent in node["depends_on"]["nodes"]
        if parent.startswith("model.")
    }
    with duckdb.connect(str(Settings(built).build_db), read_only=True) as conn:
        kinds = {
            (schema, name): kind
            for schema, name, kind in conn.execute(
                "select table_schema, table_name, table_type from information_schema.tables"
            ).fetchall()
        }
    expected, found = {}, {}
    for unique_id in sorted(tested):
        if over_the_lake(unique_id) and not reads_the_lake(unique_id):
            continue
        node = manifest["nodes"][unique_id]
        key = (node["schema"], node["alias"])
        expected[key] = "VIEW" if reads_the_lake(unique_id) else "BASE TABLE"
        found[key] = kinds.get(key)
    assert found == expected
    assert {schema for schema, _ in expected} >= {"staging", "intermediate", "marts"}
    assert "VIEW" in expected.values()


def test_a_duplicate_key_a_null_and_a_value_not_accepted_fail_their_models_tests_only(
    built: Path, tmp_path: Path
) -> None:
    """A model's not-null, accepted-values and uniqueness rules are one data test, `column_rules`
    (macros/column_rules.sql, docs/decisions/0095, 0098): a null in a required column, a value not accepted and a
    duplicated key fail that model's test, once each, its failing rows naming the column, the rule and the value;
    a duplicated row fails its table's key of several columns (`unique_together`), once. Every other model's
    (and seed's) test passes."""
    settings = copy_of(built, tmp_path)  # with its parse: dbt starts from it
    resolved = "intermediate.int_bill_to_customers_resolved"
    with duckdb.connect(str(settings.build_db)) as conn:
        conn.execute("insert into kpis.kpi_monthly select * from kpis.kpi_monthly order by all limit 1")
        first, last = f"(select min(bill_to_id) from {resolved})", f"(select max(bill_to_id) from {resolved})"
        conn.execute(f"update {resolved} set customer_id = null where bill_to_id = {first}")
        conn.execute(f"update {resolved} set match_method = 'guessed' where bill_to_id = {last}")
        # a key twice, on a row that breaks no other rule
        second = f"(select min(bill_to_id) from {resolved} where bill_to_id > {first})"
        conn.execute(f"insert into {resolved} select * from {resolved} where bill_to_id = {second}")
        duplicated = scalar(conn, f"select {second}")
        (kpi, month) = conn.execute(
            "select kpi_name, month_start_date from kpis.kpi_monthly group by all having count(*) > 1"
        ).fetchone() or (None, None)
    result = run_dbt(["test", "--select", "test_name:column_rules", "--no-write-json"], settings, in_process=True)
    tests = {r["unique_id"].split(".")[2]: r for r in result.results if not r["unique_id"].startswith("operation.")}
    outcomes = {name: (r["status"], r["failures"]) for name, r in tests.items()}
    assert outcomes.pop("column_rules_kpi_monthly") == ("fail", 1)
    assert outcomes.pop("column_rules_int_bill_to_customers_resolved") == ("fail", 3)
    assert len(outcomes) >= 55
    assert set(outcomes.values()) == {("pass", 0)}
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:  # the failing rows: the tests' queries
        failing = conn.execute(tests["column_rules_int_bill_to_customers_resolved"]["compiled_code"]).fetchall()
        together = conn.execute(tests["column_rules_kpi_monthly"]["compiled_code"]).fetchall()
    assert sorted(failing, key=str) == [
        ("bill_to_id", "unique", str(duplicated)),
        ("customer_id", "not_null", None),
        ("match_method", "accepted_values", "guessed"),
    ]
    assert together == [("kpi_name, month_start_date", "unique_together", f"{kpi}, {month}")]


@pytest.mark.parametrize(
    "rules", ["unique='date_day'", "unique_together=[['date_day']]", "unique_together=['date_day', 'month_start_date']"]
)
def test_column_rules_of_the_wrong_shape_fail_to_compile_naming_the_shapes(rules: str, tmp_path: Path) -> None:
    """A key rule must be a list of columns (`unique`) or a list of lists of two or more (`unique_together`):
    anything else fails to compile, naming the shapes (decision 0098)."""
    inline = f"{{{{ test_column_rules(ref('dim_dates'), {rules}) }}}}"
    result = run_dbt(["compile", "--inline", inline], Settings(tmp_path))  # dbt's own output: its message
    assert not result.success
    assert "unique_together is a list of lists of two or more columns" in result.output


def test_the_marts_not_null_rules_are_constraints_the_warehouse_enforces(built: Path, tmp_path: Path) -> None:
    prepare_manifest()
    nodes = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())["nodes"].values()
    declared = {
        (node["schema"], node["name"], column["name"])
        for node in nodes
        if node["resource_type"] == "model"
        for column in node["columns"].values()
        if any(c["type"] == "not_null" for c in column.get("constraints") or [])
    }
    assert len({(schema, table) for schema, table, _ in declared}) >= 17  # every mart and KPI table
    # ... instead of a not-null test or rule (a column_rules' not_null, decision 0095), not beside one
    tests = [
        n.get("test_metadata") or {} for n in nodes if n["resource_type"] == "test" and n["fqn"][1] in {"marts", "kpis"}
    ]
    assert not any(t.get("name") == "not_null" or (t.get("kwargs") or {}).get("not_null") for t in tests)
    copy = tmp_path / "build.duckdb"
    shutil.copyfile(Settings(built).build_db, copy)
    with duckdb.connect(str(copy)) as conn:
        enforced = set(
            conn.execute(
                "select table_schema, table_name, column_name from information_schema.columns where is_nullable = 'NO'"
            ).fetchall()
        )
        assert declared <= enforced  # incremental tables too: they were created with their contract
        with pytest.raises(duckdb.ConstraintException, match=r"NOT NULL constraint failed: fct_contracts\.customer_id"):
            conn.execute("insert into marts.fct_contracts (contract_id, customer_id) values ('C-X', null)")


def test_no_model_reads_the_lineage_a_rerun_changes_or_what_the_write_back_sets() -> None:
    """The build-inputs digest leaves these columns out (docs/decisions/0020): a model reading one could change
    on a re-run that the digest calls unchanged, and the dbt step would then skip a build it needed."""
    unread = {*PER_EXTRACTION, *(column for c in CONTRACTS.values() for column in c.written_back)}
    assert "Enterprise_MRR_USD__c" in unread
    lineage = re.compile(r"\b(" + "|".join(sorted(unread)) + r")\b")
    # models, their YAML (data tests name columns), macros, snapshots and singular tests; not the unit tests,
    # whose given rows may carry lineage to show it is ignored
    read_by_dbt = [
        path.relative_to(DBT_PROJECT_DIR)
        for folder in ("models", "macros", "snapshots", "tests")
        for path in (DBT_PROJECT_DIR / folder).rglob("*")
        if path.suffix in {".sql", ".yml"} and "unit" not in path.parts and lineage.search(path.read_text())
    ]
    assert read_by_dbt == []


@pytest.fixture(scope="module")
def manifest() -> dict:  # type: ignore[type-arg]
    prepare_manifest()
    return json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())


def documentation_problems(manifest: dict) -> list[str]:  # type: ignore[type-arg]
    """Every model and column described; every model with a classification and a domain the registry names an
    owner for; PII tagged."""
    problems = []
    owners = domain_owners()
    for node in manifest["nodes"].values():
        if node["resource_type"] not in {"model", "seed"}:
            continue
        name = node["name"]
        meta = {**node.get("meta", {}), **node.get("config", {}).get("meta", {})}
        if not node.get("description"):
            problems.append(f"{name}: no description")
        for key in REQUIRED_META:
            if not meta.get(key):
                problems.append(f"{name}: no {key} in meta")
        if meta.get("domain") and not owners.get(meta["domain"]):
            problems.append(f"{name}: domain {meta['domain']!r} has no owner in registry/domains")
        if meta.get("classification") and meta["classification"] not in CLASSIFICATIONS:
            problems.append(f"{name}: classification {meta['classification']!r} is not one of {CLASSIFICATIONS}")
        for column in node["columns"].values():
            if not column.get("description"):
                problems.append(f"{name}.{column['name']}: no description")
            tags = set(column.get("tags") or []) | set(column.get("config", {}).get("tags") or [])
            if column["name"] in PII_HINTS and "pii" not in tags:
                problems.append(f"{name}.{column['name']}: personal data not tagged pii")
    return problems


def test_every_model_and_column_is_documented_owned_and_classified(manifest: dict) -> None:  # type: ignore[type-arg]
    assert documentation_problems(manifest) == []


def test_the_documentation_check_catches_a_missing_piece(manifest: dict) -> None:  # type: ignore[type-arg]
    broken = json.loads(json.dumps(manifest))
    node = next(n for n in broken["nodes"].values() if n["name"] == "fct_leads")
    node["config"]["meta"]["domain"] = "nobody"
    node["meta"].pop("domain", None)
    node["columns"]["email"]["config"]["tags"] = []
    node["columns"]["email"]["tags"] = []
    next(iter(node["columns"].values()))["description"] = ""
    problems = documentation_problems(broken)
    assert "fct_leads: domain 'nobody' has no owner in registry/domains" in problems
    assert "fct_leads.email: personal data not tagged pii" in problems
    assert any(p.startswith("fct_leads.lead_id") for p in problems)


def test_the_projects_var_defaults_are_the_registrys_values() -> None:
    """A bare `dbt parse` uses dbt_project.yml's defaults; every run passes the registry's own values."""
    defaults = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert defaults == dbt_vars(load_registry())


def test_marts_enforce_their_contracts(manifest: dict) -> None:  # type: ignore[type-arg]
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["fqn"][1] in {"marts", "kpis"}:
            assert node["config"]["contract"]["enforced"], node["name"]
            assert all(c.get("data_type") for c in node["columns"].values()), node["name"]


def test_a_models_column_rules_depend_on_that_model_alone(manifest: dict) -> None:  # type: ignore[type-arg]
    """dbt holds a node back for a test of several parents only if the node is downstream of all of them: a `ref()`
    among a model's column rules would let the models after it be built on rows breaking them (decision 0098)."""
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node["name"].startswith("column_rules_"):
            assert node["depends_on"]["nodes"] == [node["attached_node"]], node["name"]
