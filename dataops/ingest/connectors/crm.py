"""CRM connector: the HTTP API with a bearer token, a time window and cursor pagination.

Transient failures (timeouts, 5xx, 429, a truncated page) are retried with exponential backoff and
jitter, waiting at least what ``Retry-After`` asks; after a bounded number of tries the extract fails
with the endpoint and the last error. A table's window is read completely before anything is returned,
so a failure never lands half a window.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import polars as pl
import tenacity

from dataops.ingest.connectors import SourceDataError, SourceUnavailable, with_day

T = TypeVar("T")


class TransientCrmError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0


class WaitHonouringRetryAfter(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.backoff = tenacity.wait_exponential_jitter(multiplier=policy.initial_backoff, max=policy.max_backoff)
        self.cap = policy.max_backoff

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        backoff = float(self.backoff(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientCrmError) and exc.retry_after is not None:
            return min(self.cap, max(exc.retry_after, backoff))
        return backoff


# The most records one page may carry (the API's ``limit`` maximum). Every request counts against the CRM's
# rate limit, so a window is read in as few pages as the API allows (docs/performance.md).
MAX_PAGE_SIZE = 2000
# From this many days, a window is read through a bulk export job: a handful of requests whatever its size,
# where pages cost one request per 2,000 records against the rate limit (docs/performance.md).
BULK_FROM_DAYS = 7


class CrmExtractor:
    """Reads a window of a CRM object: through the paged list endpoint for a short window, through a bulk export
    job (files of JSON lines) for a window of ``bulk_from_days`` days or more. Both give the same records as
    the same frame: every value as the text the API sent (``records_frame``), so a range read in bulk lands
    exactly what day-by-day reads would have landed."""

    system = "crm"
    watermark_column: str | None = "SystemModstamp"

    def __init__(
        self,
        base_url: str,
        token: str,
        page_size: int = MAX_PAGE_SIZE,
        policy: RetryPolicy | None = None,
        bulk_from_days: int = BULK_FROM_DAYS,
        poll_seconds: float = 0.05,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.page_size = page_size
        self.bulk_from_days = bulk_from_days
        self.poll_seconds = poll_seconds
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=self.policy.timeout
        )
        self.attempts = 0  # requests made, retries included (reported in metadata)
        self._counting = threading.Lock()
        self._jobs: ThreadPoolExecutor | None = None
        self._prepared: dict[str, _Export] = {}

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.shutdown(wait=True, cancel_futures=True)
        self.http.close()

    def prepare(self, tables: Iterable[str], start: dt.date, end: dt.date) -> None:
        """Start the bulk export jobs of a window's tables now, together, for ``extract`` to collect later.

        The CRM prepares a bulk job's files on its own time; started together, and before the platform lands
        other sources, they are ready or nearly when their tables' turn comes, instead of each being waited
        for in turn. ``extract`` then reads a prepared window block by block (``_Export``). A window read through
        pages is not prepared. A job that fails raises at its table's ``extract``, as an unprepared read would."""
        if not self._bulk(start, end):
            return
        if self._jobs is None:
            self._jobs = ThreadPoolExecutor(thread_name_prefix="crm-bulk")
        since, until = _bounds(start, end)
        for table in tables:
            export = self._prepared.get(table)
            if export is None or (export.start, export.end, export.next_day) != (start, end, None):
                self._prepared[table] = _Export(start, end, self._jobs.submit(self.bulk_job, table, since, until))

    def _retried(self, what: str, call: Callable[[], T]) -> T:
        retrying = retrying_policy(self.policy)
        try:
            for attempt in retrying:
                with attempt:
                    return call()
        except TransientCrmError as exc:
            raise SourceUnavailable(
                f"CRM {what} failed after {self.policy.max_attempts} attempts; last error: {exc}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One page of a list endpoint."""
        return self._retried(f"GET {path}{_window(params)}", lambda: self._page(path, params))

    def _page(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        body = self._once("GET", path, params=params)
        if "records" not in body:
            raise TransientCrmError("page without records")
        return body

    def _once(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._send(method, path, **kwargs)
        try:
            body: dict[str, Any] = resp.json()
        except ValueError as exc:
            raise TransientCrmError(f"malformed or truncated JSON page ({len(resp.content)} bytes)") from exc
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._counting:  # prepared jobs send from their own threads
            self.attempts += 1
        resp = send(self.http, self.policy, method, path, **kwargs)
        asked = _window(kwargs.get("params") or kwargs.get("json") or {})
        if resp.status_code == 401:
            raise SourceDataError(f"CRM {method} {path}{asked} refused the token (401): check CRM_TOKEN")
        if resp.status_code >= 400:
            raise SourceDataError(f"CRM {method} {path}{asked} answered {resp.status_code}: {resp.text[:300]}")
        return resp

    def records(self, table: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        """The window's records through the paged list endpoint, in the API's order."""
        params: dict[str, Any] = {"updated_since": _stamp(since), "updated_until": _stamp(until)}
        params["limit"] = self.page_size
        out: list[dict[str, Any]] = []
        while True:
            page = self._get(f"/api/v1/{table}", params)
            out.extend(page["records"])
            if not page.get("next_cursor"):
                return out
            params = {**params, "cursor": page["next_cursor"]}

    def bulk_job(self, table: str, since: dt.datetime, until: dt.datetime) -> tuple[list[str], list[str], str]:
        """A completed bulk export job of the window: the object's fields, its result files (in the API's
        order: by SystemModstamp) and the job's path, to delete once its files are read."""
        body = {"object": table, "updated_since": _stamp(since), "updated_until": _stamp(until)}
        job = self._retried(
            f"POST /api/v1/bulk/jobs{_window(body)}", lambda: self._once("POST", "/api/v1/bulk/jobs", json=body)
        )
        path = f"/api/v1/bulk/jobs/{job['id']}"
        wait = self.poll_seconds
        while job["state"] == "InProgress":
            time.sleep(wait)
            wait = min(wait * 2, 2.0)
            job = self._retried(f"GET {path}", partial(self._once, "GET", path))
        if job["state"] != "JobComplete":
            raise SourceUnavailable(f"CRM bulk export of {table} ended {job['state']}: {job.get('error', '')}")
        files = [f"{f['path']}#{f['records']}" for f in job["result_files"]]
        return list(job["fields"]), files, path

    def result_file(self, file: str) -> bytes:
        """One result file of a job (``path#records``) as JSON lines, its record count checked."""
        path, records = file.rsplit("#", 1)
        return self._retried(f"GET {path}", partial(self._result, path, int(records)))

    def finish_job(self, path: str) -> None:
        with contextlib.suppress(SourceUnavailable):  # the CRM drops it later anyway
            self._retried(f"DELETE {path}", lambda: self._once("DELETE", path))

    def bulk_files(self, table: str, since: dt.datetime, until: dt.datetime) -> tuple[list[str], list[bytes]]:
        """The window's records through a bulk export job: the object's fields, and each result file's JSON
        lines, in the API's order."""
        fields, files, path = self.bulk_job(table, since, until)
        chunks = [self.result_file(f) for f in files]
        self.finish_job(path)
        return fields, chunks

    def _result(self, path: str, records: int) -> bytes:
        resp = self._send("GET", path)
        try:
            lines = gzip.decompress(resp.content)
        except (OSError, EOFError) as exc:
            raise TransientCrmError(f"truncated bulk result file {path} ({len(resp.content)} bytes)") from exc
        found = lines.count(b"\n")
        if found != records:
            raise TransientCrmError(f"bulk result file {path} holds {found} records, not {records}")
        return lines

    def _bulk(self, start: dt.date, end: dt.date) -> bool:
        return (end - start).days + 1 >= self.bulk_from_days

    def extract(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        since, until = _bounds(start, end)
        export = self._prepared.get(table)
        if export is not None and export.serves(start, end):
            try:
                df = export.read_through(self, end)
            finally:
                if end == export.end or export.next_day != end + dt.timedelta(days=1):  # done, or failed
                    del self._prepared[table]
        elif self._bulk(start, end):
            df = records_frame(*self.bulk_files(table, since, until))
        else:
            records = self.records(table, since, until)
            fields = list(dict.fromkeys(key for record in records for key in record))
            df = records_frame(fields, ["".join(json.dumps(r) + "\n" for r in records).encode()])
        return with_day(df, _modstamp_day(), start, end)


def _modstamp_day() -> pl.Expr:
    return pl.col("SystemModstamp").str.slice(0, 10).str.to_date()


@dataclass
class _Export:
    """A prepared bulk export of a window, read forward in blocks of days (``extract`` of [start, end], then of
    the days after): its result files are fetched one at a time, as a block needs them, and the rows a file
    holds past the block wait for the next. The API writes the files in SystemModstamp order, so a block
    holds no more than its own rows and one file's; the window is never in memory whole."""

    start: dt.date
    end: dt.date
    job: Future[tuple[list[str], list[str], str]]
    next_day: dt.date | None = None
    ahead: pl.DataFrame | None = None
    files: list[str] | None = None

    def serves(self, start: dt.date, end: dt.date) -> bool:
        """Whether [start, end] is the export's next block (its days follow the last block's, inside the window)."""
        return start == (self.next_day or self.start) and end <= self.end

    def read_through(self, crm: CrmExtractor, end: dt.date) -> pl.DataFrame:
        """The export's records up to ``end`` not returned yet (every value as text, as ``records_frame``)."""
        fields, files, path = self.job.result()
        if self.files is None:
            self.files = list(files)
        frames = [self.ahead] if self.ahead is not None else []
        while self.files and not (frames and _last_day(frames[-1]) > end):
            frames.append(records_frame(fields, [crm.result_file(self.files.pop(0))]))
            if not self.files:
                crm.finish_job(path)
        frames = [f for f in frames if f.width]
        read = pl.concat(frames) if frames else pl.DataFrame()
        day = _modstamp_day()
        self.ahead = read.filter(day > end) if read.height else None
        self.next_day = end + dt.timedelta(days=1)
        return read.filter(day <= end) if read.height else read


def _last_day(frame: pl.DataFrame) -> dt.date:
    """The business date of a frame's last record (records come in SystemModstamp order)."""
    if frame.height == 0:
        return dt.date.min
    return dt.date.fromisoformat(str(frame["SystemModstamp"][-1])[:10])


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The business dates [start, end] as the half-open UTC interval the API filters on."""
    return dt.datetime.combine(start, dt.time(), dt.UTC), dt.datetime.combine(
        end + dt.timedelta(days=1), dt.time(), dt.UTC
    )


def _window(params: dict[str, Any]) -> str:
    """The business dates a request covers, for its error messages (the API object is its path)."""
    since, until = params.get("updated_since"), params.get("updated_until")
    if not since or not until:
        return ""
    last = dt.date.fromisoformat(str(until)[:10]) - dt.timedelta(days=1)
    return f" (business dates {str(since)[:10]}..{last})"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def records_frame(fields: list[str], chunks: list[bytes]) -> pl.DataFrame:
    """JSON lines of records with these fields as one frame, every value as the text the API sent (``100``,
    ``100.5``, ``true``): the same frame however the records were split, as no type is inferred from a
    chunk's values. An empty window has no columns (as a page without records says nothing of them)."""
    schema = dict.fromkeys(fields, pl.String)
    frames = [pl.read_ndjson(io.BytesIO(chunk), schema=schema) for chunk in chunks if chunk.strip()]
    return pl.concat(frames) if frames else pl.DataFrame()


def retrying_policy(policy: RetryPolicy) -> tenacity.Retrying:
    """Retry transient CRM failures with exponential backoff and jitter, at least what Retry-After asks."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=WaitHonouringRetryAfter(policy),
        retry=tenacity.retry_if_exception_type(TransientCrmError),
        reraise=True,
    )


def send(http: httpx.Client, policy: RetryPolicy, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request: timeouts, connection problems, 429 and 5xx raise TransientCrmError; the rest is returned."""
    try:
        resp = http.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientCrmError(f"timed out after {policy.timeout:g}s") from exc
    except httpx.TransportError as exc:
        raise TransientCrmError(f"connection problem: {exc}") from exc
    if resp.status_code == 429:
        raise TransientCrmError("429 rate limited", retry_after(resp))
    if resp.status_code >= 500:
        raise TransientCrmError(f"{resp.status_code} {resp.reason_phrase}", retry_after(resp))
    return resp


def retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
