"""CRM connector: the HTTP API with a bearer token, a time window and cursor pagination.

Transient failures (timeouts, 5xx, 429, a truncated page) are retried with exponential backoff and
jitter, waiting at least what ``Retry-After`` asks; after a bounded number of tries the extract fails
with the endpoint and the last error. A table's window is read completely before anything is returned,
so a failure never lands half a window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx
import polars as pl
import tenacity

from dataops.ingest.connectors import SourceDataError, SourceUnavailable, days, nulls_as_text, split_by_day


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


class CrmExtractor:
    system = "crm"
    watermark_column: str | None = "SystemModstamp"

    def __init__(
        self, base_url: str, token: str, page_size: int = MAX_PAGE_SIZE, policy: RetryPolicy | None = None
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.page_size = page_size
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=self.policy.timeout
        )
        self.attempts = 0  # requests made, retries included (reported in metadata)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        retrying = retrying_policy(self.policy)
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(path, params)
        except TransientCrmError as exc:
            raise SourceUnavailable(
                f"CRM GET {path}{_window(params)} failed after {self.policy.max_attempts} attempts; last error: {exc}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.attempts += 1
        resp = send(self.http, self.policy, "GET", path, params=params)
        if resp.status_code == 401:
            raise SourceDataError(f"CRM GET {path}{_window(params)} refused the token (401): check CRM_TOKEN")
        if resp.status_code >= 400:
            raise SourceDataError(f"CRM GET {path}{_window(params)} answered {resp.status_code}: {resp.text[:300]}")
        try:
            body: dict[str, Any] = resp.json()
        except ValueError as exc:
            raise TransientCrmError(f"malformed or truncated JSON page ({len(resp.content)} bytes)") from exc
        if "records" not in body:
            raise TransientCrmError("page without records")
        return body

    def records(self, table: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit": self.page_size,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = self._get(f"/api/v1/{table}", params)
            out.extend(page["records"])
            if not page.get("next_cursor"):
                return out
            params = {**params, "cursor": page["next_cursor"]}

    def extract(self, table: str, start: dt.date, end: dt.date) -> dict[dt.date, pl.DataFrame]:
        since = dt.datetime.combine(start, dt.time(), dt.UTC)
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
        rows = self.records(table, since, until)
        df = nulls_as_text(pl.DataFrame(rows, infer_schema_length=None)) if rows else pl.DataFrame()
        if df.height == 0:  # JSON pages carry no schema: an empty window has no columns
            return {d: pl.DataFrame() for d in days(start, end)}
        return split_by_day(df, pl.col("SystemModstamp").str.slice(0, 10).str.to_date(), start, end)


def _window(params: dict[str, Any]) -> str:
    """The business dates a request covers, for its error messages (the API object is its path)."""
    since, until = params.get("updated_since"), params.get("updated_until")
    if not since or not until:
        return ""
    last = dt.date.fromisoformat(str(until)[:10]) - dt.timedelta(days=1)
    return f" (business dates {str(since)[:10]}..{last})"


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
