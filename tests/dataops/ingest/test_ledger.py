"""The ledger's notes of the leads a build's staging held from its window (docs/decisions/0067)."""

from __future__ import annotations

import datetime as dt

import duckdb

from dataops.ingest.ledger import ensure_ledger, mark_built


def test_a_complete_build_deletes_the_notes_made_before_it_started_and_keeps_the_later_ones() -> None:
    # a note made during a build stays for the next build, in case this one stopped before reading it
    started = dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.UTC)
    with duckdb.connect() as conn:
        ensure_ledger(conn)
        notes = [("before", started - dt.timedelta(minutes=1)), ("during", started + dt.timedelta(minutes=1))]
        conn.executemany("insert into pipeline.restaged_leads values (?, ?)", notes)
        mark_built(conn, started)
        assert conn.execute("select lead_id from pipeline.restaged_leads").fetchall() == [("during",)]
