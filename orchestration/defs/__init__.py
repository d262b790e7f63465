"""Definitions by concern: ingest per source, transform, quality, publish, automation."""
