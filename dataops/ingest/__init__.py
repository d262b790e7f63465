"""Capture and ingestion: extract from each system, land immutable Parquet, validate, load the raw layer."""
