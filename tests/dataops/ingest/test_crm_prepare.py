"""A landing run starts the CRM's bulk export jobs of its window together, before it lands the other sources,
and collects each when its table's turn comes (docs/performance.md)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading

import httpx

from dataops.ingest.connectors import Extractor
from dataops.ingest.connectors.crm import CrmExtractor
from dataops.ingest.pipeline import landing_order
from quality.contracts import CONTRACTS

START, END = dt.date(2025, 2, 1), dt.date(2025, 2, 28)
RECORDS = {
    "accounts": [{"Id": "A1", "SystemModstamp": "2025-02-03T00:00:00.000Z"}],
    "leads": [{"Id": "L1", "SystemModstamp": "2025-02-04T00:00:00.000Z"}],
}


class BulkCrm:
    """A CRM's bulk API whose result files wait (boundedly) until every expected job has been posted."""

    def __init__(self, expected: int) -> None:
        self.expected, self.posted = expected, 0
        self.all_posted = threading.Event()
        self.downloaded_after_all_posted: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            obj = json.loads(request.content)["object"]
            with self.lock:
                self.posted += 1
                if self.posted == self.expected:
                    self.all_posted.set()
            return httpx.Response(202, json={"id": obj, "state": "InProgress"})
        if request.method == "DELETE":
            return httpx.Response(200, json={"deleted": True})
        obj = path.split("/")[5]
        if path.endswith("/results/0"):
            self.downloaded_after_all_posted.append(self.all_posted.wait(timeout=10))
            lines = "".join(json.dumps(r) + "\n" for r in RECORDS[obj]).encode()
            return httpx.Response(200, content=gzip.compress(lines))
        files = [{"path": f"/api/v1/bulk/jobs/{obj}/results/0", "records": len(RECORDS[obj])}]
        return httpx.Response(
            200, json={"id": obj, "state": "JobComplete", "fields": ["Id", "SystemModstamp"], "result_files": files}
        )


def extractor(crm: BulkCrm) -> CrmExtractor:
    out = CrmExtractor("http://crm.test", "token", poll_seconds=0.01)
    out.http = httpx.Client(base_url="http://crm.test", transport=httpx.MockTransport(crm))
    return out


def test_prepared_bulk_jobs_are_all_posted_before_any_is_collected() -> None:
    crm = BulkCrm(expected=len(RECORDS))
    prepared = extractor(crm)
    prepared.prepare(RECORDS, START, END)
    frames = {table: prepared.extract(table, START, END) for table in RECORDS}
    prepared.close()
    assert crm.downloaded_after_all_posted == [True, True]
    # the same frames as a read of each table in turn
    alone = extractor(BulkCrm(expected=1))
    assert all(frames[t].equals(alone.extract(t, START, END)) for t in RECORDS)


def test_the_tables_of_a_prepared_source_land_last() -> None:
    prepared: list[tuple[list[str], dt.date, dt.date]] = []

    class Preparing:
        def prepare(self, tables: list[str], start: dt.date, end: dt.date) -> None:
            prepared.append((tables, start, end))

    def extractor_for(system: str) -> Extractor:
        if system == "erp":
            raise ValueError("the ERP cannot be reached")  # its tables' own landing reports it
        return Preparing() if system == "crm" else object()  # type: ignore[return-value]

    order = landing_order(list(CONTRACTS.values()), extractor_for, START, END)
    systems = [c.system for c in order]
    assert systems == sorted(systems, key=lambda s: s == "crm") and sorted(c.name for c in order) == sorted(CONTRACTS)
    assert prepared == [([c.table for c in CONTRACTS.values() if c.system == "crm"], START, END)]
