"""The gateway's analysis on its own (no warehouse): references resolved by scope, only real tables rewritten,
the rewrite authorised again, and refusals that name only what the caller typed."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from dataops.governance import analysis
from dataops.governance.analysis import GENERAL, RESTRICTED, Dataset, Denied, authorise, nesting, references
from dataops.governance.policy import load_policy

DATASETS = {
    "marts.fct_leads": Dataset(
        "marts.fct_leads",
        "confidential",
        frozenset({"email", "lead_id"}),
        frozenset({GENERAL, RESTRICTED}),
        (("lead_id", "VARCHAR"), ("email", "VARCHAR"), ("crm_status", "VARCHAR")),
    ),
    "marts.dim_products": Dataset(
        "marts.dim_products", "public", columns=(("product_id", "VARCHAR"), ("product_name", "VARCHAR"))
    ),
    "marts.fct_gl_entries": Dataset(
        "marts.fct_gl_entries", "restricted", files=frozenset({RESTRICTED}), columns=(("journal_id", "VARCHAR"),)
    ),
    "catalog.datasets": Dataset("catalog.datasets", "internal", columns=(("dataset", "VARCHAR"),)),
}
POLICY = load_policy()


def run(sql: str, role: str = "analyst") -> analysis.Analysis:
    return authorise(sql, DATASETS, POLICY, role, 65536)


def tables_in(sql: str) -> list[tuple[str, str, str]]:
    return [(t.catalog, t.db, t.name) for t in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Table)]


@pytest.mark.parametrize(
    "sql",
    [
        "with fct_gl_entries as (select 1) select g.* from fct_gl_entries g, (select 1 from marts.fct_leads) l",
        "with FCT_GL_ENTRIES as (select 1) select * from fct_gl_entries",
        'with "fct_gl_entries" as (select 1) select * from Fct_Gl_Entries',
        "with recursive fct_gl_entries(n) as (select 1 union all select n + 1 from fct_gl_entries where n < 3) "
        "select * from fct_gl_entries",
        "with a as (select 1), b as (select * from a) select * from b, marts.dim_products",
        "select * from (with fct_gl_entries as (select 1) select * from fct_gl_entries) t",
    ],
)
def test_a_cte_reference_is_never_rewritten_and_every_real_table_is(sql: str) -> None:
    result = run(sql, role="sales_ops")
    ctes = {cte.alias.lower() for cte in sqlglot.parse_one(sql, read="duckdb").find_all(exp.CTE)}
    for catalog, schema, name in tables_in(result.sql):
        if name in ctes and not schema:
            assert not catalog  # the CTE, as DuckDB will bind it
        else:
            assert catalog in result.aliases.values() and f"{catalog}.{schema}.{name}" in result.tables
    assert "marts.fct_gl_entries" not in result.datasets


def test_each_dataset_is_pointed_at_the_file_that_may_answer_the_role() -> None:
    analyst = run("select l.email, p.product_id from marts.fct_leads l, marts.dim_products p")
    assert set(analyst.aliases) == {GENERAL} and analyst.notes == [
        "marts.fct_leads: personal data (email, lead_id) is pseudonymised"
    ]
    sales = run("select l.email, p.product_id from marts.fct_leads l, marts.dim_products p", role="sales_ops")
    assert set(sales.aliases) == {GENERAL, RESTRICTED} and sales.notes == []
    assert analyst.columns == ["marts.dim_products.product_id", "marts.fct_leads.email"]
    assert run("select * from catalog.datasets").columns == ["catalog.datasets.dataset"]


def test_aliases_are_fresh_for_every_query() -> None:
    assert run("select 1 from marts.dim_products").aliases != run("select 1 from marts.dim_products").aliases


def test_the_rewrite_is_authorised_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the rewrite ever to point a table at a file the role may not read, the second analysis refuses it."""
    original = analysis._point_at

    def wrong_file(table: exp.Table, alias: str, dataset: Dataset) -> None:
        original(table, alias.replace("general_", "restricted_"), dataset)

    monkeypatch.setattr(analysis, "_point_at", wrong_file)
    with pytest.raises(Denied, match="not authorised") as denied:
        run("select email from marts.fct_leads")
    assert denied.value.outcome == "error"


def test_a_reference_the_scopes_do_not_account_for_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "_classify", lambda scope, table: None)
    with pytest.raises(Denied, match="in a place the gateway does not accept"):
        run("select * from marts.dim_products")


def test_refusals_name_only_what_was_typed() -> None:
    with pytest.raises(Denied) as unknown:
        run("select * from marts.fct_gl_entriez")
    assert "fct_gl_entriez" in unknown.value.reason and "journal_id" not in unknown.value.reason
    with pytest.raises(Denied) as restricted:
        run("select journal_idd from marts.fct_gl_entries")
    assert "journal_id" not in restricted.value.reason.replace("journal_idd", "")


@pytest.mark.parametrize(
    ("sql", "depth"),
    [
        ("select 1", 0),
        ("select ((1))", 2),
        ("select '((((' , [[1]]", 2),
        ("select 1 -- ((((\n", 0),
        ('select "(((("', 0),
    ],
)
def test_nesting_counts_brackets_outside_quotes_and_comments(sql: str, depth: int) -> None:
    assert nesting(sql) == depth


def test_every_table_reference_is_classified() -> None:
    statement = sqlglot.parse_one(
        "with c as (select 1) select * from c, marts.dim_products, range(3) where exists (select 1 from c)",
        read="duckdb",
    )
    refs = references(statement)  # type: ignore[arg-type]
    assert [t.name for t in refs.real] == ["dim_products"]
    assert sorted(t.name for t in refs.ctes) == ["c", "c"] and len(refs.functions) == 1


def test_a_statement_too_long_to_analyse_cheaply_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(Denied) as long:
        run("select 1" + " + 1" * (analysis.MAX_TOKENS // 2 + 1))
    assert long.value.brake == "statement_size" and "tokens" in long.value.reason
    with pytest.raises(Denied) as large:
        authorise("select 1 -- " + "x" * 100, DATASETS, POLICY, "analyst", 50)
    assert large.value.brake == "statement_size" and "bytes" in large.value.reason
