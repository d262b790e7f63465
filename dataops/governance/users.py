"""Who is asking: a local users file mapping users to roles, with hashed tokens (and optional OS accounts).

The file lives in the data directory (``governance/users.yaml``, or ``DATAOPS_USERS`` for the platform's own
account), never in the repository, mode 0600. Tokens are random and only their SHA-256 is stored: a leaked
file does not leak access. Users are revoked, not deleted, so that the audit's names keep their meaning.

At the CLI door a user without a token is the operating system's account that runs the command, by its real
uid (:func:`dataops.core.settings.caller_uid`), never ``LOGNAME`` or ``USER``. Wrong, expired and revoked
tokens count against their source (:class:`FailedTokens`), which is slowed down past a few.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from dataops.core.settings import Settings, account_name, caller_uid
from dataops.governance.policy import Policy, ServerLimits
from registry.loader import read_yaml

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-]{20,200}")  # what secrets.token_urlsafe gives, with margin


class AuthenticationError(PermissionError):
    """The caller could not be identified (missing, unknown, expired or revoked credentials)."""

    def __init__(self, message: str, failed_token: bool = False) -> None:
        super().__init__(message)
        self.failed_token = failed_token  # a token was offered and did not open: counts as a failed attempt


class SlowedDown(PermissionError):
    """Too many failed tokens from this source lately: refused until ``retry_after`` seconds have passed."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    name: str
    role: str


def users_path(settings: Settings) -> Path:
    return settings.users_file


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _load(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    data = read_yaml(path) or {}
    return dict(data.get("users") or {})


def _save(path: Path, users: dict[str, dict[str, object]]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(yaml.safe_dump({"users": users}, sort_keys=True))
    os.replace(tmp, path)


def add_user(
    settings: Settings,
    policy: Policy,
    name: str,
    role: str,
    expires_days: int | None = None,
    os_user: str | None = None,
) -> str:
    """Create or replace a user; returns the token, which is shown once and stored only hashed.

    An expiry must lie in the future (``expires_days`` of at least 1); a replaced user's old token stops
    working.
    """
    policy.check_role(role)
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        raise ValueError(f"{name!r} is not a user name (letters, digits, _ . @ -; at most 64)")
    if expires_days is not None and expires_days < 1:
        raise ValueError(f"--expires-days must be at least 1 (an expiry in the future), not {expires_days}")
    path = users_path(settings)
    users = _load(path)
    token = secrets.token_urlsafe(32)
    entry: dict[str, object] = {
        "role": role,
        "token_sha256": _digest(token),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if expires_days is not None:
        entry["expires_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)).isoformat()
    if os_user:
        entry["os_user"] = os_user
    users[name] = entry
    _save(path, users)
    return token


def revoke_user(settings: Settings, name: str) -> None:
    """Revoke a user: their token and OS mapping stop working at once; the entry stays, marked, for the
    audit's sake (``users add`` the name again to give a new token)."""
    path = users_path(settings)
    users = _load(path)
    if name not in users:
        raise KeyError(f"no user {name!r}")
    users[name]["revoked_at"] = dt.datetime.now(dt.UTC).isoformat()
    _save(path, users)


def list_users(settings: Settings) -> dict[str, dict[str, object]]:
    return {
        name: {k: v for k, v in entry.items() if k != "token_sha256"}
        for name, entry in _load(users_path(settings)).items()
    }


def _active(name: str, entry: dict[str, object], now: dt.datetime) -> User:
    if entry.get("revoked_at"):
        raise AuthenticationError(f"the user {name} was revoked at {entry['revoked_at']}", failed_token=True)
    expires = entry.get("expires_at")
    if expires and dt.datetime.fromisoformat(str(expires)) <= now:
        raise AuthenticationError(f"the token of {name} expired at {expires}; ask for a new one", failed_token=True)
    return User(name, str(entry["role"]))


def authenticate_token(settings: Settings, token: str | None, now: dt.datetime | None = None) -> User:
    if not token:
        raise AuthenticationError("no token: send `Authorization: Bearer <token>` (or set DATAOPS_TOKEN)")
    if not TOKEN_PATTERN.fullmatch(token):
        raise AuthenticationError("unknown token", failed_token=True)
    digest = _digest(token)
    for name, entry in _load(users_path(settings)).items():
        if hmac.compare_digest(str(entry.get("token_sha256", "")), digest):
            return _active(name, entry, now or dt.datetime.now(dt.UTC))
    raise AuthenticationError("unknown token", failed_token=True)


def authenticate_os_user(settings: Settings, now: dt.datetime | None = None) -> User:
    """The user mapped to the operating-system account running the command (its real uid), if any."""
    me = account_name(caller_uid())
    for name, entry in _load(users_path(settings)).items():
        if entry.get("os_user") == me:
            return _active(name, entry, now or dt.datetime.now(dt.UTC))
    raise AuthenticationError(
        f"no token given and the OS account {me!r} is not mapped to a dataops user "
        "(`dataops users add NAME --role ROLE --os-user ACCOUNT`)"
    )


class FailedTokens:
    """Failed tokens per source, kept in the data directory under a lock, so that every process of both
    doors counts them together. Past ``free_failed_tokens`` within the window, each attempt from the source
    (with any token, the right one too) is refused for a delay that doubles with every failure."""

    def __init__(self, settings: Settings, limits: ServerLimits) -> None:
        self.path = settings.governance_dir / "failed_tokens.json"
        self.limits = limits

    @contextmanager
    def _state(self) -> Iterator[dict[str, list[float]]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                state: dict[str, list[float]] = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                state = {}
            horizon = time.time() - self.limits.failed_token_window_seconds
            loaded = {k: [t for t in v if t > horizon] for k, v in state.items()}
            state = {k: list(v) for k, v in loaded.items() if v}
            yield state
            if state != loaded:  # most requests only read it
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps({k: v for k, v in state.items() if v}))

    def check(self, source: str) -> None:
        """Refuse the source while it is slowed down."""
        with self._state() as state:
            failures = sorted(state.get(source, []))
        excess = len(failures) - self.limits.free_failed_tokens
        if excess < 0:
            return
        delay = min(2.0 ** (excess + 1), self.limits.max_failed_token_delay_seconds)
        wait = failures[-1] + delay - time.time()
        if wait > 0:
            raise SlowedDown(
                f"{len(failures)} failed tokens from {source} in the last "
                f"{self.limits.failed_token_window_seconds:g}s: try again in {wait:.0f}s",
                retry_after=max(1, round(wait + 0.5)),
            )

    def failed(self, source: str) -> None:
        with self._state() as state:
            state.setdefault(source, []).append(time.time())
