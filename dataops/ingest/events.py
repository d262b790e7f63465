"""Micro-batches of the product's event stream into the lake: what is new, read straight from the objects.

An hour of events is known when its manifest is (docs/decisions/0028): the objects a manifest lists and the
ledger has not seen (by name and checksum) are the next batch. DuckDB reads the gzip NDJSON itself and
writes Parquet; no event passes through Python. Per batch:

* every line is checked against the contract (quality/contracts/product.py); a line that is not an event
  goes to quarantine with its object, line number and reason, never dropped;
* personal data in properties is scrubbed per the policy (registry/policy.yaml: event_properties) before
  anything is written;
* the event time is the collector's clock corrected by the device's (registry: usage.event_time) and its
  date the lake partition; a renamed event gets its plan name from the alias's date;
* each touched date gets a new version holding every event of that date so far, one per event_id: the
  first copy received that parsed (so at-least-once delivery, late and out-of-order hours come out the same
  whatever order the batches ran in); a date with nothing new is not written again;
* anonymous devices are stitched to the first user that signed in on them (a versioned device map);
* the ledger row of every object is written last: a batch that fails part-way is redone whole, and
  redoing it lands nothing twice.

Layout under ``lake/raw/product/``: ``events/date=D/part-*.parquet`` (newest wins, like every landed
partition), ``event_devices/part-*.parquet`` (newest wins), ``event_quarantine/part-*.parquet`` and
``event_ledger/part-*.parquet`` (one file per batch, all of them count).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from dataops.core.settings import Settings, trusted_env
from dataops.ingest import lake
from quality.contracts.product import EVENT_TYPE_ALIASES, KNOWN_EVENT_TYPES, TIMESTAMP_FORMAT
from registry import POLICY_FILE
from registry.loader import Registry, load_registry, read_yaml

SYSTEM, TABLE = "product", "events"
DEVICES, QUARANTINE, LEDGER = "event_devices", "event_quarantine", "event_ledger"
# Versions kept per event date (and of the device map): each holds every older one's rows, so older ones are
# only for looking back a few batches; hourly batches would otherwise keep a day of copies of each date.
KEEP_VERSIONS = 3
TRUNCATED = "truncated object: its last line is cut off (no final newline)"


@dataclass(frozen=True)
class DeliveredObject:
    """One collector object an hour's manifest lists."""

    name: str  # relative to the events folder: date=YYYY-MM-DD/hour=HH/events-c1.ndjson.gz
    sha256: str
    lines: int
    delivered_at: dt.datetime

    @property
    def hour(self) -> str:
        """The hour the object holds, as ``YYYY-MM-DDTHH``."""
        date, hour = self.name.split("/")[:2]
        return f"{date.removeprefix('date=')}T{hour.removeprefix('hour=')}"


@dataclass
class BatchReport:
    batch_id: str
    objects: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # differs from its manifest: left for the next batch
    lines: int = 0
    events: int = 0  # lines that are events (copies included)
    landed: int = 0  # event_ids new to the lake
    duplicates: int = 0  # copies of an event the lake (or the batch) already held
    quarantined: int = 0
    scrubbed: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)  # drift: event types the plan does not know
    dates: list[dt.date] = field(default_factory=list)  # event dates that got a new version
    hour_lines: dict[str, int] = field(default_factory=dict)  # lines per delivered hour (the volume breaker)


def events_root(settings: Settings) -> Path:
    return settings.lake_dir / "raw" / SYSTEM


def delivered(events_dir: Path, since: dt.date | None = None) -> list[DeliveredObject]:
    """Every object whose hour's manifest is there (hours from ``since`` on), in order of delivery."""
    out = []
    for manifest in sorted(events_dir.glob("date=*/hour=*/manifest.json")):
        if since and manifest.parent.parent.name < f"date={since.isoformat()}":
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now: seen on the next look
        folder = manifest.parent.relative_to(events_dir).as_posix()
        at = dt.datetime.fromisoformat(str(data["delivered_at"]).replace("Z", "+00:00"))
        for entry in data["objects"]:
            if entry.get("sha256"):  # an instance that received nothing that hour wrote no object
                out.append(DeliveredObject(f"{folder}/{entry['name']}", entry["sha256"], int(entry["lines"]), at))
    return sorted(out, key=lambda o: (o.delivered_at, o.name))


def ledger(settings: Settings) -> pl.DataFrame:
    """One row per object ingested: which batch, its lines, events and quarantined lines."""
    files = sorted((events_root(settings) / LEDGER).glob("part-*.parquet"))
    if not files:
        return pl.DataFrame(schema=_LEDGER_SCHEMA)
    return pl.read_parquet(files)


def pending(settings: Settings, since: dt.date | None = None) -> list[DeliveredObject]:
    """Delivered objects the ledger has not seen (a re-delivered object with new contents is new)."""
    seen = set(ledger(settings).select("object", "sha256").iter_rows())
    return [o for o in delivered(settings.product_events, since) if (o.name, o.sha256) not in seen]


def scrub_rules() -> list[tuple[str, str, str]]:
    """The policy's rules for personal data in event properties: (name, regex, replacement).

    The policy file in force is the one the gateway reads (``DATAOPS_POLICY`` for the platform's account).
    """
    path = Path(trusted_env("DATAOPS_POLICY") or POLICY_FILE)
    rules = (read_yaml(path).get("event_properties") or {}).get("scrub") or {}
    out = []
    for name, rule in rules.items():
        pattern, replacement = str(rule["pattern"]), str(rule["replacement"])
        re.compile(pattern)  # a bad pattern fails here, naming itself, not inside a batch
        out.append((str(name), pattern, replacement))
    return out


def quarantine(settings: Settings) -> pl.DataFrame:
    """Every quarantined line once (a batch redone after a failure wrote its lines again)."""
    files = sorted((events_root(settings) / QUARANTINE).glob("part-*.parquet"))
    if not files:
        return pl.DataFrame(
            schema=pl.Schema({"_object": pl.String, "_line": pl.Int64, "reason": pl.String, "text": pl.String})
        )
    return pl.read_parquet(files).unique(["_object", "_line"], keep="first", maintain_order=True)


def current_event_files(settings: Settings) -> list[Path]:
    """The newest version of every event date: together, the lake's events."""
    files = (newest_file(settings, d) for d in lake.landed_days(settings.lake_dir, SYSTEM, TABLE))
    return [f for f in files if f is not None]


def newest_file(settings: Settings, day: dt.date) -> Path | None:
    """The newest landed file of an event date (each version of a date is one file)."""
    version = lake.newest(settings.lake_dir, SYSTEM, TABLE, day)
    return version.day_file(day) if version is not None else None


def current_devices_file(settings: Settings) -> Path | None:
    found = sorted((events_root(settings) / DEVICES).glob("part-*.parquet"))
    return found[-1] if found else None


def lake_versions(settings: Settings) -> list[str]:
    """The versions the usage models read (every date's newest, the newest device map), by name under the lake:
    a version is never rewritten, so its name stands for its content."""
    files = [*current_event_files(settings), current_devices_file(settings)]
    return [str(f.relative_to(settings.lake_dir)) for f in files if f is not None]


def ingest_events(
    settings: Settings,
    objects: list[DeliveredObject] | None = None,
    *,
    max_objects: int | None = None,
    registry: Registry | None = None,
    batch_id: str | None = None,
) -> BatchReport:
    """Ingest ``objects`` (default: every pending one, at most ``max_objects``, oldest delivery first)."""
    registry = registry or _registry()
    report = BatchReport(batch_id or uuid.uuid4().hex)
    if objects is None and not pending(settings):
        return report  # nothing delivered (a data directory without the product): not even a lock file
    with _locked(events_root(settings)):
        todo = pending(settings) if objects is None else objects
        todo = todo[:max_objects] if max_objects else todo
        if not todo:
            return report
        with duckdb.connect(config={"threads": 1, "memory_limit": "1GB"}) as conn:
            conn.execute("set temp_directory = ?", [str(settings.lake_dir / ".tmp")])
            conn.execute("set enable_progress_bar = false")
            accepted = _read_lines(conn, settings.product_events, todo, report)
            if not accepted:
                return report
            _parse(conn, settings.product_events)
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            _fresh(conn, report.batch_id, now, registry)
            _land_dates(conn, settings, report)
            _land_devices(conn, settings, report.batch_id)
            _land_quarantine(conn, settings, report)
            _write_ledger(conn, settings, accepted, report, now)
        for day in report.dates:
            _keep_newest(lake.partition_dir(settings.lake_dir, SYSTEM, TABLE, day))
        _keep_newest(events_root(settings) / DEVICES)
    return report


# ------------------------------------------------------------------ reading and checking lines
def _read_lines(
    conn: duckdb.DuckDBPyConnection, events_dir: Path, objects: list[DeliveredObject], report: BatchReport
) -> list[DeliveredObject]:
    """Every line of every object whose checksum matches its manifest, numbered from 1 in its object."""
    accepted = []
    for obj in objects:
        path = events_dir / obj.name
        if not path.exists() or _sha256(path) != obj.sha256:
            report.mismatched.append(obj.name)
            continue
        accepted.append(obj)
        report.objects.append(obj.name)
    if not accepted:
        return accepted
    # One thread reads the objects one after the other, each from its start: a line's number is its place
    # in the scan less its object's first place (tests check them against the simulator's object:line keys).
    conn.execute(
        "create temp table scanned as select parse_path(filename)[-3:] as parts, ordinality as pos, line as text "
        "from read_csv(?, columns = {'line': 'varchar'}, header = false, delim = chr(1), quote = '', escape = '', "
        "compression = 'gzip', auto_detect = false, strict_mode = false, filename = true) with ordinality",
        [[str(events_dir / o.name) for o in accepted]],
    )
    conn.execute(
        "create temp table lines as select array_to_string(parts, '/') as object, "
        "pos - min(pos) over (partition by parts) + 1 as line, text from scanned"
    )
    conn.execute("drop table scanned")
    for hour, lines in conn.execute(
        "select split_part(object, '/', 1) || 'T' || split_part(object, '/', 2), count(*) from lines group by 1"
    ).fetchall():
        report.hour_lines[_hour_key(hour)] = int(lines)
    report.lines = sum(report.hour_lines.values())
    return accepted


def _hour_key(folder_pair: str) -> str:
    day, hour = folder_pair.split("T")
    return f"{day.removeprefix('date=')}T{hour.removeprefix('hour=')}"


def _parse(conn: duckdb.DuckDBPyConnection, events_dir: Path) -> None:
    """Split lines into events and quarantine (``reason`` set), with the contract's fields extracted."""
    # One parse per line for the scalar fields (a list of paths), one for the properties object.
    names = ("event_id", "event_type", "user_id", "device_id", "account_ref", "occurred_at", "sent_at", "received_at")
    context = ("platform", "app_version", "user_agent")
    paths = ", ".join([f"'$.{n}'" for n in names] + [f"'$.context.{n}'" for n in context])
    fields = ", ".join(
        [f"v[{i}] as {n}" for i, n in enumerate(names[:5], start=1)]
        + [f"try_strptime(v[{i}], '{TIMESTAMP_FORMAT}') as {n}" for i, n in enumerate(names[5:], start=6)]
        + [f"v[{i}] as {n}" for i, n in enumerate(context, start=len(names) + 1)]
    )
    conn.execute(
        f"""
        create temp table parsed as
        with numbered as (
            select object, line, text, line = max(line) over (partition by object) as is_last,
                coalesce(json_valid(text), false) as valid
            from lines
        ), docs as (
            select *, case when valid then json_type(text) end as doc_type from numbered
        ), values as (
            select *, case when doc_type = 'OBJECT' then json_extract_string(text, [{paths}]) end as v,
                case when doc_type = 'OBJECT' then json_extract(text, '$.properties')::varchar end as properties_raw
            from docs
        ), extracted as (
            select object, line, text, is_last, valid, doc_type, {fields}, properties_raw from values
        )
        select *, case
            when text is null or trim(text) = '' then 'empty line'
            when not valid then 'not valid JSON'
            when doc_type <> 'OBJECT' then 'a JSON ' || lower(doc_type) || ', not an object'
            when coalesce(event_id, '') = '' then 'no event_id'
            when coalesce(event_type, '') = '' then 'no event_type'
            when occurred_at is null then 'occurred_at missing or not a timestamp'
            when sent_at is null then 'sent_at missing or not a timestamp'
            when received_at is null then 'received_at missing or not a timestamp'
        end as reason
        from extracted
        """
    )
    # An invalid last line of an object without a final newline was cut off by the collector.
    suspects = conn.execute("select object from parsed where is_last and not valid and text is not null").fetchall()
    cut = [name for (name,) in suspects if not _ends_with_newline(events_dir / name)]
    if cut:
        conn.execute(
            "update parsed set reason = ? where is_last and not valid and list_contains(?, object)", [TRUNCATED, cut]
        )


def _fresh(conn: duckdb.DuckDBPyConnection, batch_id: str, now: dt.datetime, registry: Registry) -> None:
    """The batch's events as the lake holds them (copies included; duplicates go when dates are merged)."""
    scrub = "properties_raw"
    for _name, pattern, replacement in scrub_rules():
        scrub = f"regexp_replace({scrub}, {_literal(pattern)}, {_literal(replacement)}, 'g')"
    agents = "|".join(_regex_escape(p) for p in registry.usage.excluded_user_agent_patterns) or "$^"
    aliases = " ".join(
        f"when event_type = {_literal(sent)} and event_time::date >= date '{since.isoformat()}' then {_literal(plan)}"
        for sent, (plan, since) in EVENT_TYPE_ALIASES.items()
    )
    known = ", ".join(_literal(t) for t in KNOWN_EVENT_TYPES)
    conn.execute(
        f"""
        create temp table fresh as
        with timed as (
            select *, received_at - (sent_at - occurred_at) as event_time, {scrub} as properties
            from parsed where reason is null
        ), named as (
            select *, case {aliases or "when false then null"} else event_type end as event_name from timed
        )
        select event_id, event_type, event_name, occurred_at, sent_at, received_at, event_time,
            event_time::date as event_date, user_id, device_id, account_ref, platform, app_version, user_agent,
            properties,
            regexp_matches(coalesce(user_agent, ''), {_literal("(?i)" + agents)}) as excluded,
            properties is distinct from properties_raw as scrubbed,
            event_name in ({known}) as known_type,
            object as _object, line as _line, ? as _batch_id, ?::timestamp as _ingested_at
        from named
        """,
        [batch_id, now],
    )


# ------------------------------------------------------------------ landing
def _land_dates(conn: duckdb.DuckDBPyConnection, settings: Settings, report: BatchReport) -> None:
    """A new version of each date the batch touches, one row per event_id (the first copy received)."""
    report.events = _scalar(conn, "select count(*) from fresh")
    report.scrubbed = _scalar(conn, "select count(*) from fresh where scrubbed")
    report.unknown_types = dict(
        conn.execute("select event_type, count(*) from fresh where not known_type group by 1 order by 1").fetchall()
    )
    days = [d for (d,) in conn.execute("select distinct event_date from fresh order by 1").fetchall()]
    for day in days:
        old = newest_file(settings, day)
        source = f"select * from fresh where event_date = '{day.isoformat()}'"
        old_rows = 0
        if old is not None:
            old_rows = _scalar(conn, f"select count(*) from {_parquet(old)}")
            source += f" union all by name select * from {_parquet(old)}"
        query = (
            f"select * from ({source}) qualify row_number() over "
            "(partition by event_id order by received_at, _ingested_at, _object, _line) = 1 order by event_time"
        )
        folder = lake.partition_dir(settings.lake_dir, SYSTEM, TABLE, day)
        written = _write_version(conn, query, folder, report.batch_id, skip_if_rows=old_rows if old else None)
        report.landed += max(written - old_rows, 0) if written else 0
        if written:
            report.dates.append(day)
    report.duplicates = report.events - report.landed


def _write_version(
    conn: duckdb.DuckDBPyConnection, query: str, folder: Path, batch_id: str, skip_if_rows: int | None = None
) -> int:
    """Write ``query`` as a new version in ``folder``, atomically; 0 when it has ``skip_if_rows`` rows (the
    newest version's count: nothing new) and nothing was written."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    final = folder / f"part-{stamp}-{batch_id[:8]}.parquet"
    tmp = folder / f".{final.name}.tmp"
    rows = _scalar(conn, f"copy ({query}) to {_literal(str(tmp))} (format parquet, compression zstd)")
    if skip_if_rows is not None and rows == skip_if_rows:
        tmp.unlink()
        return 0
    os.replace(tmp, final)
    return rows


def _land_devices(conn: duckdb.DuckDBPyConnection, settings: Settings, batch_id: str) -> None:
    """The device map: each device's first user (by the time received), from events that count as usage."""
    candidates = (
        "select device_id, user_id, received_at, true as _new from fresh "
        "where not excluded and user_id is not null and device_id is not null"
    )
    old = current_devices_file(settings)
    if old is not None:
        candidates += f" union all select device_id, user_id, first_received_at, false from {_parquet(old)}"
    conn.execute(
        f"create temp table devices as select * from ({candidates}) "
        "qualify row_number() over (partition by device_id order by received_at, _new) = 1"
    )
    if _scalar(conn, "select count(*) from devices where _new") == 0:
        return
    query = "select device_id, user_id, received_at as first_received_at from devices order by device_id"
    _write_version(conn, query, events_root(settings) / DEVICES, batch_id)


def _land_quarantine(conn: duckdb.DuckDBPyConnection, settings: Settings, report: BatchReport) -> None:
    report.quarantined = _scalar(conn, "select count(*) from parsed where reason is not null")
    if not report.quarantined:
        return
    text = "text"
    for _name, pattern, replacement in scrub_rules():
        text = f"regexp_replace({text}, {_literal(pattern)}, {_literal(replacement)}, 'g')"
    query = (
        f"select object as _object, line as _line, reason, {text} as text, '{report.batch_id}' as _batch_id "
        "from parsed where reason is not null order by object, line"
    )
    _write_version(conn, query, events_root(settings) / QUARANTINE, report.batch_id)


_LEDGER_SCHEMA = pl.Schema(
    [
        ("object", pl.String()),
        ("sha256", pl.String()),
        ("hour", pl.String()),
        ("delivered_at", pl.Datetime("us")),
        ("lines", pl.Int64()),
        ("events", pl.Int64()),
        ("quarantined", pl.Int64()),
        ("batch_id", pl.String()),
        ("ingested_at", pl.Datetime("us")),
    ]
)


def _write_ledger(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    accepted: list[DeliveredObject],
    report: BatchReport,
    now: dt.datetime,
) -> None:
    counts = {
        name: (int(lines), int(events), int(bad))
        for name, lines, events, bad in conn.execute(
            "select object, count(*), count(*) filter (where reason is null), "
            "count(*) filter (where reason is not null) from parsed group by 1"
        ).fetchall()
    }
    rows = [
        {
            "object": o.name,
            "sha256": o.sha256,
            "hour": o.hour,
            "delivered_at": o.delivered_at.replace(tzinfo=None),
            "lines": counts.get(o.name, (0, 0, 0))[0],
            "events": counts.get(o.name, (0, 0, 0))[1],
            "quarantined": counts.get(o.name, (0, 0, 0))[2],
            "batch_id": report.batch_id,
            "ingested_at": now,
        }
        for o in accepted
    ]
    folder = events_root(settings) / LEDGER
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"part-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}-{report.batch_id[:8]}.parquet"
    tmp = folder / f".{final.name}.tmp"
    pl.DataFrame(rows, schema=_LEDGER_SCHEMA).write_parquet(tmp)
    os.replace(tmp, final)


# ------------------------------------------------------------------ helpers
@functools.cache
def _registry() -> Registry:
    """Read once per process: a sensor's micro-batches run many times in one."""
    return load_registry()


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One batch at a time per lake (a sensor tick and a manual run must not interleave)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".events.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _keep_newest(folder: Path, keep: int = KEEP_VERSIONS) -> None:
    """Remove superseded versions (after the batch's ledger rows: a redo never needs them)."""
    for old in sorted(folder.glob("part-*.parquet"))[:-keep]:
        old.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ends_with_newline(path: Path) -> bool:
    """Whether the object's text ends with a newline, decompressed as a stream."""
    inflate = zlib.decompressobj(wbits=47)
    last = b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            out = inflate.decompress(chunk)
            last = out[-1:] or last
    return last == b"\n"


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _parquet(path: Path) -> str:
    """A landed file as a DuckDB relation (its folder's ``date=`` is no column of it)."""
    return f"read_parquet({_literal(str(path))}, hive_partitioning = false)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\/" else c for c in text)
