"""The mock CRM's HTTP API: auth, cursor pagination, filters, the rate limit and every fault."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from source_systems.crm.server import RunningServer, start_in_thread

pytestmark = pytest.mark.xdist_group("tiny")


@pytest.fixture()
def crm(tiny_sources: Path) -> Iterator[RunningServer]:
    with start_in_thread(tiny_sources / "crm" / "crm.sqlite", token="t0ken", rate_per_second=200, burst=200) as srv:
        yield srv


def _get(srv: RunningServer, obj: str, token: str | None = "t0ken", **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{srv.url}/api/v1/{obj}", params=params, headers=headers, timeout=10)


def _all_pages(srv: RunningServer, obj: str, **params: object) -> list[dict[str, object]]:
    records, cursor = [], None
    while True:
        page = _get(srv, obj, **params, **({"cursor": cursor} if cursor else {})).json()
        records += page["records"]
        cursor = page["next_cursor"]
        if not cursor:
            return records


def test_requests_without_the_right_token_are_refused(crm: RunningServer) -> None:
    assert _get(crm, "accounts", token=None).status_code == 401
    assert _get(crm, "accounts", token="wrong").status_code == 401
    assert _get(crm, "accounts").status_code == 200


def test_cursor_pagination_returns_every_record_once(crm: RunningServer, tiny_sources: Path) -> None:
    records = _all_pages(crm, "leads", limit=137)
    ids = [r["Id"] for r in records]
    with sqlite3.connect(tiny_sources / "crm" / "crm.sqlite") as conn:
        expected = {r[0] for r in conn.execute("select Id from leads")}
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


def test_updated_since_and_until_filter_a_half_open_window(crm: RunningServer) -> None:
    since, until = "2025-01-10T00:00:00Z", "2025-01-11T00:00:00Z"
    window = _all_pages(crm, "lead_history", updated_since=since, updated_until=until, limit=500)
    assert window
    assert all("2025-01-10T" <= r["SystemModstamp"] < "2025-01-11T" for r in window)
    everything = _all_pages(crm, "lead_history", limit=2000)
    assert len(window) == sum(1 for r in everything if "2025-01-10T" <= r["SystemModstamp"] < "2025-01-11T")
    # offsets are understood: the same window written in another zone
    same = _all_pages(
        crm,
        "lead_history",
        updated_since="2025-01-10T02:00:00+02:00",
        updated_until="2025-01-10T19:00:00-05:00",
        limit=500,
    )
    assert {r["Id"] for r in same} == {r["Id"] for r in window}


def test_bad_parameters_get_clear_errors(crm: RunningServer) -> None:
    assert _get(crm, "nonsense").status_code == 404
    bad = _get(crm, "leads", updated_since="yesterday")
    assert bad.status_code == 400 and "updated_since" in bad.text
    assert _get(crm, "leads", cursor="garbage").status_code == 400
    assert _get(crm, "leads", limit=0).status_code == 422


def test_the_rate_limit_answers_429_with_retry_after(tiny_sources: Path) -> None:
    with start_in_thread(tiny_sources / "crm" / "crm.sqlite", token="t", rate_per_second=1, burst=3) as srv:
        codes = [_get(srv, "accounts", token="t", limit=1) for _ in range(6)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
        time.sleep(float(limited[0].headers["Retry-After"]))
        assert _get(srv, "accounts", token="t", limit=1).status_code == 200


def test_faults_5xx_burst_429_storm_slow_and_truncated(crm: RunningServer) -> None:
    crm.faults.errors_5xx = 2
    assert [_get(crm, "accounts", limit=1).status_code for _ in range(3)] == [503, 503, 200]
    crm.faults.rate_limited, crm.faults.retry_after = 2, 0.5
    storm = [_get(crm, "accounts", limit=1) for _ in range(3)]
    assert [r.status_code for r in storm] == [429, 429, 200] and storm[0].headers["Retry-After"] == "0.5"
    crm.faults.slow, crm.faults.slow_seconds = 1, 1.0
    started = time.monotonic()
    assert _get(crm, "accounts", limit=1).status_code == 200
    assert time.monotonic() - started >= 1.0
    crm.faults.truncated = 1
    cut = _get(crm, "accounts", limit=5)
    with pytest.raises(ValueError):
        cut.json()
    assert _get(crm, "accounts", limit=5).json()["records"]


def test_faults_can_be_set_over_http(crm: RunningServer) -> None:
    resp = httpx.post(f"{crm.url}/api/v1/_faults", json={"errors_5xx": 1}, headers={"Authorization": "Bearer t0ken"})
    assert resp.status_code == 200
    assert _get(crm, "accounts").status_code == 503
    assert (
        httpx.post(f"{crm.url}/api/v1/_faults", json={"nope": 1}, headers={"Authorization": "Bearer t0ken"}).status_code
        == 422
    )


def test_the_collection_endpoint_writes_many_accounts_with_one_result_each(tiny_sources: Path, tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite"
    db.write_bytes((tiny_sources / "crm" / "crm.sqlite").read_bytes())
    with sqlite3.connect(db) as conn:
        first, second = (r[0] for r in conn.execute("select Id from accounts order by Id limit 2"))
    records = [
        {"id": first, "fields": {"Enterprise_State__c": "active"}},
        {"id": "001NOSUCHACCOUNT", "fields": {"Enterprise_State__c": "active"}},
        {"id": second, "fields": {"Name": "renamed"}},
    ]
    with start_in_thread(db, token="t", rate_per_second=200, burst=200) as srv:
        headers = {"Authorization": "Bearer t"}
        answer = httpx.patch(f"{srv.url}/api/v1/accounts", json={"records": records}, headers=headers, timeout=10)
        too_many = [{"id": first, "fields": {"Enterprise_State__c": "active"}}] * 201
        refused = httpx.patch(f"{srv.url}/api/v1/accounts", json={"records": too_many}, headers=headers, timeout=10)
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["updated", "not_found", "invalid"]
    assert "Name" in results[2]["error"]
    with sqlite3.connect(db) as conn:
        held = dict(conn.execute("select Id, Enterprise_State__c from accounts where Id in (?, ?)", (first, second)))
    assert held == {first: "active", second: None}
    assert refused.status_code == 413 and "at most 200" in refused.text
