"""The contract of the product's event stream: what a landed event is, which event types the tracking plan
knows, and the names the product renamed (an alias from the date the product's release sent the new name).

Lines are checked where they are read (DuckDB, dataops/ingest/events.py): a line that is not a JSON object,
has no ``event_id`` or ``event_type``, or whose timestamps do not parse is quarantined with its reason. An
event type the plan does not know is landed and reported as drift: the product ships features before the
plan catches up, and its users' events are still usage.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

# The tracking plan, by current name.
KNOWN_EVENT_TYPES = (
    "page.viewed",
    "search.performed",
    "user.signed_in",
    "report.created",
    "report.viewed",
    "dashboard.viewed",
    "dashboard.shared",
    "workflow.run",
    "integration.synced",
    "comment.added",
    "report.exported",
    "seat.assigned",
    "seat.revoked",
)
# sent name -> (the plan's name, from the date the product sends it): release 5.2 renamed the export event.
EVENT_TYPE_ALIASES: dict[str, tuple[str, dt.date]] = {"report.downloaded": ("report.exported", dt.date(2024, 1, 1))}
# The formats of the three timestamps: the clients' and the collectors' ISO 8601 in UTC, milliseconds.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%gZ"


class LandedEvents(pa.DataFrameModel):
    """One event as the lake holds it: the first copy received that parsed, its time corrected."""

    event_id: str = pa.Field(str_length={"min_value": 1})
    event_type: str  # as the product sent it (an alias keeps its sent name here)
    event_name: str  # the plan's name: the alias resolved from its date
    occurred_at: pl.Datetime = pa.Field(nullable=False)
    sent_at: pl.Datetime = pa.Field(nullable=False)
    received_at: pl.Datetime = pa.Field(nullable=False)
    event_time: pl.Datetime = pa.Field(nullable=False)  # received_at - (sent_at - occurred_at)
    event_date: pl.Date
    user_id: str | None = pa.Field(nullable=True)
    device_id: str | None = pa.Field(nullable=True)
    account_ref: str | None = pa.Field(nullable=True)
    platform: str | None = pa.Field(nullable=True)
    app_version: str | None = pa.Field(nullable=True)
    user_agent: str | None = pa.Field(nullable=True)
    properties: str | None = pa.Field(nullable=True)  # JSON text, personal data scrubbed
    excluded: bool  # a bot, probe or synthetic monitor (registry: usage.excluded_user_agent_patterns)
    scrubbed: bool
    known_type: bool
    source_object: str = pa.Field(alias="_object")
    source_line: int = pa.Field(alias="_line", ge=1)
    batch_id: str = pa.Field(alias="_batch_id")
    ingested_at: pl.Datetime = pa.Field(alias="_ingested_at")

    class Config:
        strict = True

    @pa.dataframe_check(name="event_date_is_the_event_times_date")
    @classmethod
    def event_time_is_its_date(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("event_time").dt.date() == pl.col("event_date"))
