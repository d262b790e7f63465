"""The HTTP door, against the real server (`dataops api serve`) on a loopback port: same rules as the CLI."""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.gateway import Denied, Gateway
from dataops.governance.policy import load_policy
from dataops.governance.users import User, add_user, revoke_user
from tests.governance.conftest import Governed, ask, cli, json_rows, serve

pytestmark = pytest.mark.xdist_group("built")


@pytest.fixture(scope="module")
def api(governed: Governed) -> Iterator[str]:
    with serve(governed) as url:
        yield url


def test_results_come_back_as_json_csv_and_arrow(api: str, governed: Governed) -> None:
    token = governed.tokens["analyst"]
    sql = "select kpi_name, value from kpis.kpi_daily where date_day = date '2025-03-31' order by kpi_name"
    as_json = ask(api, token, sql)
    assert as_json.status_code == 200, as_json.text
    rows = as_json.json()["rows"]
    assert rows and set(rows[0]) == {"kpi_name", "value"}
    as_csv = ask(api, token, sql, "csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["kpi_name"] for r in parsed] == [r["kpi_name"] for r in rows]
    as_arrow = ask(api, token, sql, "arrow")
    table = pa.ipc.open_stream(io.BytesIO(as_arrow.content)).read_all()
    assert table.column("kpi_name").to_pylist() == [r["kpi_name"] for r in rows]
    assert [float(v) for v in table.column("value").to_pylist()] == pytest.approx([r["value"] for r in rows])


def test_the_api_applies_the_same_rules_as_the_cli(api: str, governed: Governed) -> None:
    analyst, finance = governed.tokens["analyst"], governed.tokens["finance"]
    denied = ask(api, analyst, "select * from marts.fct_gl_entries")
    assert denied.status_code == 403
    assert "marts.fct_gl_entries is restricted" in denied.json()["message"]
    granted = ask(api, finance, "select count(*) as n from marts.fct_gl_entries")
    assert granted.status_code == 200 and granted.json()["rows"][0]["n"] > 0
    emails = ask(api, analyst, "select email from marts.dim_people limit 20").json()["rows"]
    assert emails and all("@" not in row["email"] for row in emails)
    hostile = ask(api, analyst, "select * from read_parquet('lake/**/*.parquet')")
    assert hostile.status_code == 403


def test_missing_wrong_expired_and_revoked_tokens_are_refused_and_audited(api: str, governed: Governed) -> None:
    expired = add_user(governed.settings, governed.policy, "leaver", "analyst", expires_days=1)
    users = yaml.safe_load(governed.settings.users_file.read_text())
    users["users"]["leaver"]["expires_at"] = "2025-01-01T00:00:00+00:00"  # a day that has passed
    governed.settings.users_file.write_text(yaml.safe_dump(users))
    revoked = add_user(governed.settings, governed.policy, "moved_on", "analyst")
    assert ask(api, revoked, "select 1 as one").status_code == 200
    revoke_user(governed.settings, "moved_on")
    before = len(audit.read(governed.settings))
    sql = "select 1 as one"
    cases = ((None, "no token"), ("not-a-token", "unknown token"), (expired, "expired"), (revoked, "revoked"))
    for token, says in cases:
        response = ask(api, token, sql)
        assert response.status_code == 401
        assert says in response.json()["message"]
    records = audit.read(governed.settings)[before:]
    assert len(records) == 4
    assert all(r["door"] == "http" and r["allowed"] is False and "authentication" in r["reason"] for r in records)
    (governed.settings.governance_dir / "failed_tokens.json").unlink()


def test_an_oversized_request_is_refused_before_it_is_read(api: str, governed: Governed) -> None:
    before = len(audit.read(governed.settings))
    huge = "select 1 as one -- " + "x" * 200_000
    response = ask(api, governed.tokens["analyst"], huge)
    assert response.status_code == 413 and "limited to" in response.json()["message"]
    (record,) = audit.read(governed.settings)[before:]
    assert record["allowed"] is False and "exceeds" in record["reason"]


def test_concurrent_http_requests_lose_no_audit_record(api: str, governed: Governed) -> None:
    before = len(audit.read(governed.settings))
    tokens = [governed.tokens[r] for r in ("analyst", "finance", "sales_ops", "executive")]
    statements = [f"select {i} as n, kpi_name from kpis.kpi_monthly limit 3" for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: ask(api, tokens[i % 4], statements[i]).status_code, range(40)))
    assert codes == [200] * 40
    records = audit.read(governed.settings)[before:]  # every line parses: none interleaved
    assert sorted(r["statement"] for r in records) == sorted(statements)


def _query_many(data_dir: str, worker: int, count: int) -> int:
    settings = Settings(Path(data_dir))
    gateway = Gateway(settings, load_policy())
    for i in range(count):
        sql = f"select {worker * 1000 + i} as n from kpis.kpi_monthly limit 1"
        if i % 5 == 4:
            sql = "select * from marts.fct_gl_entries -- " + str(worker * 1000 + i)
        with contextlib.suppress(Denied):
            gateway.run(User(f"worker{worker}", "analyst"), sql, door="cli")
    return count


def test_concurrent_gateway_processes_lose_no_audit_record(governed: Governed) -> None:
    before = len(audit.read(governed.settings))
    workers, each = 4, 15
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        done = list(
            pool.map(_query_many, [str(governed.settings.data_dir)] * workers, range(workers), [each] * workers)
        )
    assert sum(done) == workers * each
    records = audit.read(governed.settings)[before:]
    assert len(records) == workers * each
    assert sum(1 for r in records if r["allowed"] is False) == workers * 3
    assert {r["user"] for r in records} == {f"worker{w}" for w in range(workers)}


def test_duplicate_column_names_keep_every_value_in_json_csv_and_arrow(api: str, governed: Governed) -> None:
    sql = "select a.kpi_name, b.kpi_name, 'x' as kpi_name_2 from kpis.kpi_monthly a, kpis.kpi_monthly b limit 1"
    answer = ask(api, governed.tokens["analyst"], sql).json()
    assert answer["names"] == ["kpi_name", "kpi_name", "kpi_name_2"]
    assert answer["columns"] == ["kpi_name", "kpi_name_3", "kpi_name_2"]  # unique keys, none taken twice
    assert list(answer["rows"][0].values())[2] == "x" and len(answer["rows"][0]) == 3
    as_csv = ask(api, governed.tokens["analyst"], sql, "csv").text.splitlines()
    assert as_csv[0] == "kpi_name,kpi_name,kpi_name_2"
    table = pa.ipc.open_stream(io.BytesIO(ask(api, governed.tokens["analyst"], sql, "arrow").content)).read_all()
    assert table.column_names == ["kpi_name", "kpi_name", "kpi_name_2"] and table.num_rows == 1


@pytest.mark.parametrize(
    "sql",
    [
        "select count(*) as n from publish.publish_log",
        "select count(*) as n from publish.kpi_history",
        "select count(*) as n from publish.quarantine_summary",
        "select count(*) as n from catalog.datasets",
        "select count(*) as n from catalog.columns where dataset = 'marts.fct_leads'",
    ],
)
def test_the_documented_analyst_schemas_answer_at_both_doors(api: str, governed: Governed, sql: str) -> None:
    over_http = ask(api, governed.tokens["analyst"], sql)
    assert over_http.status_code == 200 and over_http.json()["rows"][0]["n"] > 0, over_http.text
    code, output = cli(governed, "sql", sql, "--format", "json", token=governed.tokens["analyst"])
    assert code == 0 and json_rows(output) == over_http.json()["rows"]


def test_benign_queries_answer_at_both_doors_as_before(api: str, governed: Governed) -> None:
    sql = (
        "with monthly as (select kpi_name, max(value) as peak from kpis.kpi_monthly group by all) "
        "select m.kpi_name, m.peak, r.unit from monthly m join reference.registry_kpis r using (kpi_name) "
        "order by m.kpi_name"
    )
    over_http = ask(api, governed.tokens["finance"], sql)
    assert over_http.status_code == 200 and len(over_http.json()["rows"]) > 5
    code, output = cli(governed, "sql", sql, "--format", "json", token=governed.tokens["finance"])
    assert code == 0 and json_rows(output) == over_http.json()["rows"]
