"""The formats of the files analysts open with their own tools: written for the clients they have, not for the
DuckDB the platform happens to run.

A DuckDB writes its newest storage format by default, which no older DuckDB can open: upgrading the platform
would lock out every analyst's CLI, JDBC driver (DBeaver, DataGrip), harlequin and notebook pinned to an
older release. So the published files are written in a storage version those readers accept, chosen here,
once, and proved with real clients of those versions in tests/publish/test_analyst_clients.py
(docs/decisions/0026). Raise it only when every client analysts use reads the newer version.
"""

from __future__ import annotations

from pathlib import Path

# DuckDB's storage compatibility option for the analyst and restricted files: the format of DuckDB 1.0,
# which every DuckDB from 1.0 on reads (storage version number 64).
STORAGE_VERSION = "v1.0.0"
# The Parquet format version of the data products (V1: what every Parquet reader reads).
PARQUET_VERSION = "V1"


def attach_published(path: Path, alias: str) -> str:
    """The ATTACH statement of a file analysts will open: created in :data:`STORAGE_VERSION` (an existing
    file keeps the version it was created with)."""
    return f"attach '{path}' as {alias} (storage_version '{STORAGE_VERSION}')"
