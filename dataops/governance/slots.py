"""Concurrency caps over both doors: a query holds one of its user's slots and one of the server's while it
runs, as ``flock`` locks on files in the data directory, so that every process of the CLI and the HTTP API
counts together and a process that dies releases its slots with it."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dataops.core.settings import Settings
from dataops.governance.analysis import Denied

POLL_SECONDS = 0.05


def _try_one(paths: list[Path]) -> int | None:
    for path in paths:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
    return None


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def hold(settings: Settings, user: str, per_user: int, per_server: int, queue_seconds: float) -> Iterator[None]:
    """Hold a slot of the user's and one of the server's for the block, waiting up to ``queue_seconds`` for
    them; refused (the brake ``concurrency_user`` or ``concurrency_server``) when none frees up in time."""
    folder = settings.governance_dir / "slots"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = hashlib.sha256(user.encode()).hexdigest()[:16]
    user_slots = [folder / f"user-{key}-{i}" for i in range(max(1, per_user))]
    server_slots = [folder / f"server-{i}" for i in range(max(1, per_server))]
    deadline = time.monotonic() + queue_seconds
    with ExitStack() as held:
        for paths, brake, what in (
            (user_slots, "concurrency_user", f"{per_user} queries of yours are running"),
            (server_slots, "concurrency_server", f"the gateway is running its {per_server} queries at once"),
        ):
            while (fd := _try_one(paths)) is None:
                if time.monotonic() >= deadline:
                    raise Denied(
                        f"concurrency limit: {what}; waited {queue_seconds:g}s for a slot. Try again shortly",
                        brake=brake,
                    )
                time.sleep(POLL_SECONDS)
            held.callback(_release, fd)
        yield
