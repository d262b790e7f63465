"""The mock CRM's bulk update job: create, upload, close, poll, results; auth, rate limit, faults, idempotency."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from source_systems.crm.server import RunningServer, start_in_thread

pytestmark = pytest.mark.xdist_group("tiny")

JOBS = "/api/v1/bulk/ingest"


@pytest.fixture()
def crm_db(tiny_sources: Path, tmp_path: Path) -> Path:
    db = tmp_path / "crm.sqlite"
    db.write_bytes((tiny_sources / "crm" / "crm.sqlite").read_bytes())
    return db


@pytest.fixture()
def crm(crm_db: Path) -> Iterator[RunningServer]:
    with start_in_thread(crm_db, token="t", rate_per_second=500, burst=500) as srv:
        yield srv


def _call(srv: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {srv.token}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{srv.url}{path}", headers=headers, timeout=10, **kwargs)


def _open(srv: RunningServer, key: str) -> httpx.Response:
    return _call(
        srv, "POST", JOBS, json={"object": "accounts", "operation": "update"}, headers={"Idempotency-Key": key}
    )


def _upload(srv: RunningServer, job: str, records: list[dict[str, Any]] | bytes) -> httpx.Response:
    lines = records if isinstance(records, bytes) else "".join(json.dumps(r) + "\n" for r in records).encode()
    return _call(
        srv, "PUT", f"{JOBS}/{job}/records", content=gzip.compress(lines), headers={"Content-Encoding": "gzip"}
    )


def _finished(srv: RunningServer, job: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status: dict[str, Any] = _call(srv, "GET", f"{JOBS}/{job}").json()
        if status["state"] not in ("UploadComplete", "InProgress") or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def _accounts(db: Path, n: int) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("select Id from accounts order by Id limit ?", (n,))]


def _states(db: Path, ids: list[str]) -> dict[str, str | None]:
    with sqlite3.connect(db) as conn:
        marks = ", ".join("?" * len(ids))
        return dict(conn.execute(f"select Id, Enterprise_State__c from accounts where Id in ({marks})", ids).fetchall())


def test_a_job_applies_an_uploaded_file_with_one_result_per_record(crm: RunningServer, crm_db: Path) -> None:
    first, second, third = _accounts(crm_db, 3)
    opened = _open(crm, "job-1")
    assert opened.status_code == 201 and opened.json()["state"] == "Open"
    job = opened.json()["id"]
    again = _open(crm, "job-1")  # a create whose answer was lost, repeated: the same job
    assert again.status_code == 200 and again.json()["id"] == job
    assert _open(crm, "job-2").json()["id"] != job

    records = [
        {"id": first, "fields": {"Enterprise_State__c": "active", "Enterprise_MRR_USD__c": 12.5}},
        {"id": "001NOSUCHACCOUNT", "fields": {"Enterprise_State__c": "active"}},
        {"id": second, "fields": {"Name": "renamed"}},
        {"id": third, "fields": {"Enterprise_State__c": "churned"}},
    ]
    assert _upload(crm, job, records[:1]).status_code == 201
    uploaded = _upload(crm, job, records)  # an upload replaces the one before
    assert uploaded.status_code == 201 and uploaded.json()["records_uploaded"] == 4
    assert _states(crm_db, [first, third]) == {first: None, third: None}  # nothing applied before the close

    closed = _call(crm, "PATCH", f"{JOBS}/{job}", json={"state": "UploadComplete"})
    assert closed.status_code == 200 and closed.json()["state"] in ("UploadComplete", "InProgress", "JobComplete")
    status = _finished(crm, job)
    assert status["state"] == "JobComplete"
    assert (status["records_processed"], status["records_failed"]) == (4, 2)
    assert _call(crm, "PATCH", f"{JOBS}/{job}", json={"state": "UploadComplete"}).json()["state"] == "JobComplete"
    assert _upload(crm, job, records).status_code == 409  # closed: no more uploads

    answer = _call(crm, "GET", status["results"])
    results = [json.loads(line) for line in gzip.decompress(answer.content).splitlines()]
    assert [(r["id"], r["status"]) for r in results] == [
        (first, "updated"),
        ("001NOSUCHACCOUNT", "not_found"),
        (second, "invalid"),
        (third, "updated"),
    ]
    assert "Name" in results[2]["error"]
    assert _states(crm_db, [first, second, third]) == {first: "active", second: None, third: "churned"}
    with sqlite3.connect(crm_db) as conn:
        assert conn.execute("select Name from accounts where Id = ?", (second,)).fetchone()[0] != "renamed"

    assert _call(crm, "DELETE", f"{JOBS}/{job}").status_code == 200
    assert _call(crm, "GET", f"{JOBS}/{job}").status_code == 404


def test_a_job_needs_the_token_a_key_and_well_formed_records(crm: RunningServer, crm_db: Path) -> None:
    body = {"object": "accounts", "operation": "update"}
    assert httpx.post(f"{crm.url}{JOBS}", json=body, headers={"Idempotency-Key": "k"}).status_code == 401
    assert _call(crm, "POST", JOBS, json=body).status_code == 422  # no Idempotency-Key
    assert (
        _call(
            crm, "POST", JOBS, json={"object": "leads", "operation": "update"}, headers={"Idempotency-Key": "k"}
        ).status_code
        == 422
    )
    job = _open(crm, "k").json()["id"]
    assert _call(crm, "PATCH", f"{JOBS}/{job}", json={"state": "UploadComplete"}).status_code == 409  # nothing uploaded

    (account,) = _accounts(crm_db, 1)
    good = json.dumps({"id": account, "fields": {"Enterprise_State__c": "active"}})
    refused = _upload(crm, job, f"{good}\nnot json\n".encode())
    assert refused.status_code == 400 and "line 2" in refused.text
    assert _call(crm, "GET", f"{JOBS}/{job}").json()["records_uploaded"] == 0  # all or nothing
    plain = _call(crm, "PUT", f"{JOBS}/{job}/records", content=f"{good}\n".encode())  # uncompressed is fine
    assert plain.status_code == 201 and plain.json()["records_uploaded"] == 1
    aborted = _call(crm, "PATCH", f"{JOBS}/{job}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert _call(crm, "PATCH", f"{JOBS}/{job}", json={"state": "UploadComplete"}).status_code == 409
    assert _states(crm_db, [account]) == {account: None}


def test_job_requests_count_against_the_rate_limit(crm_db: Path) -> None:
    with start_in_thread(crm_db, token="t", rate_per_second=1, burst=3) as srv:
        answers = [_open(srv, f"k{n}") for n in range(5)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1


def test_faults_reach_jobs_and_a_failed_job_applies_nothing(crm: RunningServer, crm_db: Path) -> None:
    crm.faults.errors_5xx = 1
    assert _open(crm, "k").status_code == 503
    crm.faults.truncated = 1
    with pytest.raises(ValueError):
        _open(crm, "k").json()
    job = _open(crm, "k")  # the truncated answer's job, asked again
    assert job.status_code == 200
    (account,) = _accounts(crm_db, 1)
    _upload(crm, job.json()["id"], [{"id": account, "fields": {"Enterprise_State__c": "active"}}])
    crm.faults.failed_jobs = 1
    _call(crm, "PATCH", f"{JOBS}/{job.json()['id']}", json={"state": "UploadComplete"})
    status = _finished(crm, job.json()["id"])
    assert status["state"] == "Failed" and "simulated" in status["error"]
    assert _call(crm, "GET", f"{JOBS}/{job.json()['id']}/results").status_code == 404
    assert _states(crm_db, [account]) == {account: None}
