"""Helpers for tests that talk to real local servers and browsers (loopback only, no network)."""

from __future__ import annotations

import socket

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser`); Playwright cannot download its own here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
