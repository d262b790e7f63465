"""The ingestion's block budget is one platform setting (docs/decisions/0064): the landing and the loads of a
run read it from the platform resource, which reads ``DATAOPS_INGEST_BLOCK_ROWS``."""

from __future__ import annotations

import pytest

from dataops.ingest.pipeline import BLOCK_ROWS
from orchestration.lib.resources import platform_resource


def test_the_block_budget_comes_from_the_environment_with_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAOPS_INGEST_BLOCK_ROWS", raising=False)
    assert platform_resource().ingest_options().block_rows == BLOCK_ROWS
    monkeypatch.setenv("DATAOPS_INGEST_BLOCK_ROWS", "1234")
    resource = platform_resource()
    assert resource.ingest_block_rows == 1234 and resource.ingest_options().block_rows == 1234
