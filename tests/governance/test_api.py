"""The HTTP door, against the real server (`dataops api serve`) on a loopback port: same rules as the CLI."""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.gateway import Denied, Gateway
from dataops.governance.policy import load_policy
from dataops.governance.users import User, add_user
from tests.governance.conftest import Governed
from tests.local import free_port

pytestmark = pytest.mark.xdist_group("built")

DATAOPS = Path(sys.executable).with_name("dataops")


@pytest.fixture(scope="module")
def api(governed: Governed) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATAOPS_DATA_DIR": str(governed.settings.data_dir)}
    server = subprocess.Popen(
        [str(DATAOPS), "api", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"`dataops api serve` did not start: {server.communicate()[1][-2000:]}")
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def ask(url: str, token: str | None, sql: str, fmt: str = "json") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/query", json={"sql": sql, "format": fmt}, headers=headers, timeout=60)


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


def test_missing_wrong_and_expired_tokens_are_refused_and_audited(api: str, governed: Governed) -> None:
    expired = add_user(governed.settings, governed.policy, "leaver", "analyst", expires_days=-1)
    before = len(audit.read(governed.settings))
    sql = "select 1 as one"
    for token, says in ((None, "no token"), ("not-a-token", "unknown token"), (expired, "expired")):
        response = ask(api, token, sql)
        assert response.status_code == 401
        assert says in response.json()["message"]
    records = audit.read(governed.settings)[before:]
    assert len(records) == 3
    assert all(r["door"] == "http" and r["allowed"] is False and "authentication" in r["reason"] for r in records)


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
