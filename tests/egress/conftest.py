"""Shared by the page tests of egress: one Chromium per test, Debian's (Playwright cannot download its own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.local import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
