"""The mock CRM's bulk export: an asynchronous query job that returns files, as real CRMs offer for large
reads (Salesforce's Bulk API 2.0 query jobs, HubSpot's exports).

- ``POST /api/v1/bulk/jobs`` with ``{"object", "updated_since", "updated_until"}`` starts a job over the same
  filter as the list endpoint (one consistent snapshot) and answers ``202`` with its id.
- ``GET /api/v1/bulk/jobs/{id}`` reports ``state`` (``InProgress``, ``JobComplete`` or ``Failed``) and, once
  complete, the records' ``fields`` and ``result_files``: each file's path and record count.
- ``GET /api/v1/bulk/jobs/{id}/results/{n}`` returns one file: the records as gzip-compressed JSON lines, in
  the list endpoint's order and with its values.
- ``DELETE /api/v1/bulk/jobs/{id}`` drops the job and its files.

Every request counts against the API's rate limit, like any other: a range read in bulk costs a handful of
requests instead of one per page.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from source_systems.crm import store

RECORDS_PER_FILE = 100_000


@dataclass
class BulkJob:
    id: str
    obj: str
    since: str | None
    until: str | None
    folder: Path
    state: str = "InProgress"
    error: str | None = None
    files: list[int] = field(default_factory=list)  # records per result file
    fields: list[str] = field(default_factory=list)  # every record's keys, in order

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": self.obj, "state": self.state}
        if self.state == "JobComplete":
            out["records"] = sum(self.files)
            out["fields"] = self.fields
            out["result_files"] = [
                {"path": f"/api/v1/bulk/jobs/{self.id}/results/{n}", "records": count}
                for n, count in enumerate(self.files)
            ]
        if self.error:
            out["error"] = self.error
        return out


def _write_results(job: BulkJob, db_path: Path, records_per_file: int) -> None:
    """The job's snapshot, in files of at most ``records_per_file`` records."""
    try:
        clauses, params = [], []
        if job.since:
            clauses.append("SystemModstamp >= ?")
            params.append(job.since)
        if job.until:
            clauses.append("SystemModstamp < ?")
            params.append(job.until)
        where = f"where {' and '.join(clauses)}" if clauses else ""
        conn = store.connect(db_path, readonly=True)
        try:
            cursor = conn.execute(f"select * from {job.obj} {where} order by SystemModstamp, Id", params)
            job.fields = [column[0] for column in cursor.description]
            while True:
                rows = cursor.fetchmany(records_per_file)
                if not rows and job.files:
                    break
                path = job.folder / f"{len(job.files)}.jsonl.gz"
                with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
                    for row in rows:
                        out.write(json.dumps(dict(row)) + "\n")
                job.files.append(len(rows))
                if len(rows) < records_per_file:
                    break
        finally:
            conn.close()
        job.state = "JobComplete"
    except Exception as exc:  # the client sees it in the job's status
        job.state, job.error = "Failed", f"{type(exc).__name__}: {exc}"


def add_bulk_routes(app: FastAPI, db_path: Path, canonical: Any, records_per_file: int = RECORDS_PER_FILE) -> None:
    """Register the bulk export endpoints on the CRM's app (``canonical`` reads the window's timestamps as
    the list endpoint does)."""
    jobs: dict[str, BulkJob] = {}
    lock = threading.Lock()

    def job_of(job_id: str) -> BulkJob:
        with lock:
            job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, detail=f"no bulk job {job_id!r}")
        return job

    @app.post("/api/v1/bulk/jobs", status_code=202)
    def create_job(body: dict[str, Any]) -> dict[str, Any]:
        obj = str(body.get("object", ""))
        if obj not in store.OBJECTS:
            raise HTTPException(404, detail=f"unknown object {obj!r}; objects: {sorted(store.OBJECTS)}")
        since, until = body.get("updated_since"), body.get("updated_until")
        job_id = uuid.uuid4().hex
        # a folder of the job's own, which its deletion removes: nothing is left behind by a client that deletes
        # its jobs (a folder shared by the app's jobs outlived every app: one per test that started a CRM)
        folder = Path(tempfile.mkdtemp(prefix=f"mock-crm-bulk-{job_id[:8]}-"))
        job = BulkJob(
            job_id,
            obj,
            canonical(since, "updated_since") if since else None,
            canonical(until, "updated_until") if until else None,
            folder,
        )
        with lock:
            jobs[job_id] = job
        threading.Thread(
            target=_write_results, args=(job, db_path, records_per_file), name=f"bulk-{job_id[:8]}", daemon=True
        ).start()
        return job.status()

    @app.get("/api/v1/bulk/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return job_of(job_id).status()

    @app.get("/api/v1/bulk/jobs/{job_id}/results/{number}")
    def job_result(job_id: str, number: int) -> FileResponse:
        job = job_of(job_id)
        if job.state != "JobComplete" or not 0 <= number < len(job.files):
            raise HTTPException(404, detail=f"bulk job {job_id} has no result file {number} (state {job.state})")
        return FileResponse(job.folder / f"{number}.jsonl.gz", media_type="application/gzip")

    @app.delete("/api/v1/bulk/jobs/{job_id}")
    def delete_job(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        with lock:
            jobs.pop(job_id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        return {"id": job_id, "deleted": True}
