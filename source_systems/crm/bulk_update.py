"""The mock CRM's bulk update: an asynchronous ingest job that applies an uploaded file of account writes, as
real CRMs offer for large change sets (Salesforce's Bulk API 2.0 ingest jobs, HubSpot's batch imports).

- ``POST /api/v1/bulk/ingest`` with ``{"object": "accounts", "operation": "update"}`` and an
  ``Idempotency-Key`` header (required) opens a job (``201``, state ``Open``). The same key again answers the
  job it opened first (``200``), whatever its state: a create whose answer was lost is safe to repeat.
- ``PUT /api/v1/bulk/ingest/{id}/records`` uploads the job's records while it is ``Open``: JSON lines
  ``{"id": ..., "fields": {...}}``, gzip-compressed when sent with ``Content-Encoding: gzip``, at most
  :data:`MAX_JOB_RECORDS`. An upload replaces the previous one, so repeating it is harmless; a line that is
  not such a record refuses the whole upload (``400``, naming the line).
- ``PATCH /api/v1/bulk/ingest/{id}`` with ``{"state": "UploadComplete"}`` closes the job and starts applying
  it; closing it again answers its status. ``{"state": "Aborted"}`` drops an open job.
- ``GET /api/v1/bulk/ingest/{id}`` reports ``state`` (``Open``, ``UploadComplete``, ``InProgress``,
  ``JobComplete``, ``Failed`` or ``Aborted``), the records uploaded, processed and failed.
- ``GET /api/v1/bulk/ingest/{id}/results`` returns, once complete, one result per record in the order
  uploaded, as gzip-compressed JSON lines: the collection endpoint's results (``updated``, ``not_found``, or
  ``invalid`` with its error), applied with the same semantics (:func:`store.write_accounts`).
- ``DELETE /api/v1/bulk/ingest/{id}`` drops the job.

A job is applied in one transaction, so it is applied whole or not at all. Every request counts against the
API's rate limit, like any other, and the API's faults apply to it; ``Faults.failed_jobs`` makes the next
jobs end ``Failed`` having applied nothing, ``Faults.stalled_jobs`` leaves them ``InProgress`` for ever.
Jobs live in the server's memory, as the export's do.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from source_systems.crm import store

MAX_JOB_RECORDS = 100_000
CLOSED = ("UploadComplete", "InProgress", "JobComplete", "Failed")


@dataclass
class UpdateJob:
    id: str
    key: str
    state: str = "Open"
    records: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "accounts",
            "operation": "update",
            "state": self.state,
            "records_uploaded": len(self.records),
            "records_processed": len(self.results),
            "records_failed": sum(r["status"] != "updated" for r in self.results),
        }
        if self.state == "JobComplete":
            out["results"] = f"/api/v1/bulk/ingest/{self.id}/results"
        if self.error:
            out["error"] = self.error
        return out


def _apply(job: UpdateJob, db_path: Path, fail: bool) -> None:
    """Apply the job's records in one transaction; the client sees the outcome in the job's status."""
    job.state = "InProgress"
    try:
        if fail:
            raise RuntimeError("simulated processing failure (Faults.failed_jobs)")
        conn = store.connect(db_path)
        try:
            with conn:
                results = store.write_accounts(conn, job.records)
        finally:
            conn.close()
        job.results, job.state = results, "JobComplete"
    except Exception as exc:
        job.state, job.error = "Failed", f"{type(exc).__name__}: {exc}"


def _parse_upload(body: bytes, encoding: str | None) -> list[dict[str, Any]]:
    """The uploaded JSON lines as records, or a 400 naming the first line that is not one."""
    if encoding == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise HTTPException(400, detail=f"the upload is not valid gzip: {exc}") from exc
    records: list[dict[str, Any]] = []
    for number, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not record.get("id") or not isinstance(record.get("fields"), dict):
            raise HTTPException(400, detail=f'line {number} is not a record {{"id": ..., "fields": {{...}}}}')
        records.append(record)
        if len(records) > MAX_JOB_RECORDS:
            raise HTTPException(413, detail=f"more than {MAX_JOB_RECORDS} records in one job")
    return records


def add_update_routes(app: FastAPI, db_path: Path) -> None:
    """Register the bulk update endpoints on the CRM's app."""
    jobs: dict[str, UpdateJob] = {}
    by_key: dict[str, str] = {}
    lock = threading.Lock()
    app.state.update_jobs_opened = 0  # a count, for tests of the idempotent create

    def job_of(job_id: str) -> UpdateJob:
        with lock:
            job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, detail=f"no bulk update job {job_id!r}")
        return job

    @app.post("/api/v1/bulk/ingest")
    def create_job(body: dict[str, Any], idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        if not idempotency_key:
            raise HTTPException(422, detail="the Idempotency-Key header is required")
        if body.get("object") != "accounts" or body.get("operation") != "update":
            raise HTTPException(422, detail='only {"object": "accounts", "operation": "update"} jobs are offered')
        with lock:
            known = by_key.get(idempotency_key)
            if known is not None and known in jobs:
                return JSONResponse(jobs[known].status(), 200)
            job = UpdateJob(uuid.uuid4().hex, idempotency_key)
            jobs[job.id], by_key[idempotency_key] = job, job.id
            app.state.update_jobs_opened += 1
        return JSONResponse(job.status(), 201)

    @app.put("/api/v1/bulk/ingest/{job_id}/records", status_code=201)
    async def upload(job_id: str, request: Request) -> dict[str, Any]:
        job = job_of(job_id)
        records = _parse_upload(await request.body(), request.headers.get("content-encoding"))
        with lock:
            if job.state != "Open":
                raise HTTPException(409, detail=f"bulk update job {job_id} is {job.state}: uploads need it Open")
            job.records = records
        return job.status()

    @app.patch("/api/v1/bulk/ingest/{job_id}")
    def set_state(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        job, wanted = job_of(job_id), body.get("state")
        with lock:
            if wanted == "UploadComplete" and job.state == "Open":
                if not job.records:
                    raise HTTPException(409, detail=f"bulk update job {job_id} has no records to apply")
                job.state = "UploadComplete"
                if app.state.faults.take("stalled_jobs"):
                    job.state = "InProgress"
                else:
                    fail = app.state.faults.take("failed_jobs")
                    threading.Thread(target=_apply, args=(job, db_path, fail), name=f"ingest-{job_id[:8]}").start()
            elif wanted == "Aborted" and job.state == "Open":
                job.state = "Aborted"
            elif not (wanted == "UploadComplete" and job.state in CLOSED):
                raise HTTPException(409, detail=f"bulk update job {job_id} is {job.state}; cannot set {wanted!r}")
        return job.status()

    @app.get("/api/v1/bulk/ingest/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return job_of(job_id).status()

    @app.get("/api/v1/bulk/ingest/{job_id}/results")
    def job_results(job_id: str) -> Response:
        job = job_of(job_id)
        if job.state != "JobComplete":
            raise HTTPException(404, detail=f"bulk update job {job_id} has no results (state {job.state})")
        lines = "".join(json.dumps(r) + "\n" for r in job.results).encode()
        return Response(gzip.compress(lines, compresslevel=1), media_type="application/gzip")

    @app.delete("/api/v1/bulk/ingest/{job_id}")
    def delete_job(job_id: str) -> dict[str, Any]:
        job_of(job_id)
        with lock:
            jobs.pop(job_id, None)
        return {"id": job_id, "deleted": True}
