"""The enterprise model's fixture lives in tests/conftest.py (`built`), shared with the governance tests."""

from __future__ import annotations

from tests.conftest import BUILT_DAYS as DAYS

__all__ = ["DAYS"]
