"""Who is asking: a local users file mapping users to roles, with hashed tokens (and optional OS users).

The file lives in the data directory (``governance/users.yaml``, or ``DATAOPS_USERS``), never in the
repository. Tokens are random and only their SHA-256 is stored: a leaked file does not leak access.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from dataops.core.settings import Settings
from dataops.governance.policy import Policy


class AuthenticationError(PermissionError):
    """The caller could not be identified (missing, unknown or expired credentials)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str


def users_path(settings: Settings) -> Path:
    return Path(os.environ.get("DATAOPS_USERS") or settings.data_dir / "governance" / "users.yaml")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _load(path: Path) -> dict[str, dict[str, object]]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("users") or {})


def add_user(
    settings: Settings,
    policy: Policy,
    name: str,
    role: str,
    expires_days: int | None = None,
    os_user: str | None = None,
) -> str:
    """Create or replace a user; returns the token, which is shown once and stored only hashed."""
    policy.check_role(role)
    path = users_path(settings)
    users = _load(path)
    token = secrets.token_urlsafe(32)
    entry: dict[str, object] = {"role": role, "token_sha256": _digest(token)}
    if expires_days is not None:
        entry["expires_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)).isoformat()
    if os_user:
        entry["os_user"] = os_user
    users[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"users": users}, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token


def list_users(settings: Settings) -> dict[str, dict[str, object]]:
    return {
        name: {k: v for k, v in entry.items() if k != "token_sha256"}
        for name, entry in _load(users_path(settings)).items()
    }


def authenticate_token(settings: Settings, token: str | None, now: dt.datetime | None = None) -> User:
    if not token:
        raise AuthenticationError("no token: send `Authorization: Bearer <token>` (or set DATAOPS_TOKEN)")
    digest = _digest(token)
    for name, entry in _load(users_path(settings)).items():
        if hmac.compare_digest(str(entry.get("token_sha256", "")), digest):
            expires = entry.get("expires_at")
            if expires and dt.datetime.fromisoformat(str(expires)) <= (now or dt.datetime.now(dt.UTC)):
                raise AuthenticationError(f"the token of {name} expired at {expires}; ask for a new one")
            return User(name, str(entry["role"]))
    raise AuthenticationError("unknown token")


def authenticate_os_user(settings: Settings) -> User:
    """The user mapped to the operating-system account running the command, where configured."""
    me = getpass.getuser()
    for name, entry in _load(users_path(settings)).items():
        if entry.get("os_user") == me:
            return User(name, str(entry["role"]))
    raise AuthenticationError(
        f"no token given and the OS user {me!r} is not mapped to a dataops user "
        "(`dataops users add NAME --role ROLE --os-user USER`)"
    )
