"""The access policy: roles, grants and per-role limits, from one file (registry/policy.yaml).

Who may read what is computed here and only here: the gateway enforces it, publishing splits the files by
it, the catalog and the Dagster UI show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.core.settings import trusted_env
from registry import POLICY_FILE
from registry.loader import read_yaml

POLICY_PATH = POLICY_FILE


class PolicyError(ValueError):
    """The policy file is malformed."""


UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
UNITS |= {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_bytes(value: object) -> int:
    """``16MB``, ``1GiB``, ``65536`` -> bytes (DuckDB's units: KB, MB, GB are powers of 1000)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(value), re.IGNORECASE)
    if not match:
        raise PolicyError(f"{value!r} is not a size (e.g. 16MB, 1GB)")
    return int(float(match.group(1)) * UNITS[(match.group(2) or "").upper()])


@dataclass(frozen=True)
class Limits:
    max_scan_rows: int
    statement_timeout_seconds: float
    max_result_rows: int
    memory_limit: str
    threads: int
    max_result_bytes: int = 16_000_000
    max_concurrent_queries: int = 2

    @property
    def memory_bytes(self) -> int:
        return parse_bytes(self.memory_limit)

    @property
    def worker_ceiling_bytes(self) -> int:
        """The most memory the query's worker process may hold: DuckDB's own limit covers what its buffer
        manager allocates, not every allocation (a huge string, the result's Python objects)."""
        return 2 * self.memory_bytes + 512 * 1024**2


@dataclass(frozen=True)
class ServerLimits:
    max_concurrent_queries: int = 4
    queue_seconds: float = 10
    max_request_bytes: int = 65536
    max_statement_bytes: int = 65536
    free_failed_tokens: int = 5
    failed_token_window_seconds: float = 600
    max_failed_token_delay_seconds: float = 300


@dataclass(frozen=True)
class Policy:
    roles: tuple[str, ...]
    restricted_grants: dict[str, tuple[str, ...]]
    personal_data_grants: dict[str, tuple[str, ...]]
    limits_by_role: dict[str, Limits]
    how_to_ask: str
    server: ServerLimits = field(default_factory=ServerLimits)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def check_role(self, role: str) -> None:
        if role not in self.roles:
            raise PolicyError(f"unknown role {role!r}; roles: {', '.join(self.roles)}")

    def can_read(self, role: str, dataset: str, classification: str) -> bool:
        """Opt-out: readable unless restricted; restricted needs a grant."""
        if classification != "restricted":
            return True
        return role in self.restricted_grants.get(dataset, ())

    def sees_personal_data(self, role: str, dataset: str) -> bool:
        return role in self.personal_data_grants.get(dataset, ())

    def readers(self, dataset: str, classification: str) -> list[str]:
        return [r for r in self.roles if self.can_read(r, dataset, classification)]

    def clear_personal_data_readers(self, dataset: str) -> list[str]:
        return [r for r in self.roles if self.sees_personal_data(r, dataset)]

    def limits(self, role: str) -> Limits:
        return self.limits_by_role.get(role, self.limits_by_role["default"])


def policy_path(path: str | Path | None = None) -> Path:
    """The policy file in force: the given file, else ``DATAOPS_POLICY`` (for the platform's own account
    only: :func:`dataops.core.settings.trusted_env`), else the committed one."""
    return Path(path or trusted_env("DATAOPS_POLICY") or POLICY_PATH)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and check the policy (see :func:`policy_path` for which file)."""
    source = policy_path(path)
    try:
        data = read_yaml(source)
    except FileNotFoundError:
        raise PolicyError(f"policy file not found: {source}") from None
    roles = tuple(data.get("roles") or {})
    if not roles:
        raise PolicyError(f"{source}: no roles")
    grants = data.get("grants") or {}
    for kind in ("restricted_datasets", "personal_data"):
        for dataset, granted in (grants.get(kind) or {}).items():
            unknown = set(granted) - set(roles)
            if unknown:
                raise PolicyError(f"{source}: grants.{kind}.{dataset} names unknown roles {sorted(unknown)}")
    raw_limits = data.get("limits") or {}
    if "default" not in raw_limits:
        raise PolicyError(f"{source}: limits.default is required")
    default = raw_limits["default"]
    limits = {}
    for role, values in raw_limits.items():
        if role != "default" and role not in roles:
            raise PolicyError(f"{source}: limits.{role} is not a role")
        merged = {**default, **(values or {})}
        try:
            limits[role] = Limits(
                max_scan_rows=int(merged["max_scan_rows"]),
                statement_timeout_seconds=float(merged["statement_timeout_seconds"]),
                max_result_rows=int(merged["max_result_rows"]),
                memory_limit=str(merged["memory_limit"]),
                threads=int(merged["threads"]),
                max_result_bytes=parse_bytes(merged.get("max_result_bytes", "16MB")),
                max_concurrent_queries=int(merged.get("max_concurrent_queries", 2)),
            )
            limits[role].memory_bytes  # noqa: B018 (checks the size parses)
        except (KeyError, ValueError) as exc:
            raise PolicyError(f"{source}: limits.{role}: {exc}") from None
    return Policy(
        roles=roles,
        restricted_grants={k: tuple(v) for k, v in (grants.get("restricted_datasets") or {}).items()},
        personal_data_grants={k: tuple(v) for k, v in (grants.get("personal_data") or {}).items()},
        limits_by_role=limits,
        how_to_ask=str(data.get("how_to_ask", "")),
        server=_server_limits(data.get("server") or {}, source),
        raw=data,
    )


def _server_limits(raw: dict[str, Any], source: Path) -> ServerLimits:
    failed = raw.get("failed_tokens") or {}
    default = ServerLimits()
    try:
        return ServerLimits(
            max_concurrent_queries=int(raw.get("max_concurrent_queries", default.max_concurrent_queries)),
            queue_seconds=float(raw.get("queue_seconds", default.queue_seconds)),
            max_request_bytes=parse_bytes(raw.get("max_request_bytes", default.max_request_bytes)),
            max_statement_bytes=parse_bytes(raw.get("max_statement_bytes", default.max_statement_bytes)),
            free_failed_tokens=int(failed.get("free_attempts", default.free_failed_tokens)),
            failed_token_window_seconds=float(failed.get("window_seconds", default.failed_token_window_seconds)),
            max_failed_token_delay_seconds=float(
                failed.get("max_delay_seconds", default.max_failed_token_delay_seconds)
            ),
        )
    except ValueError as exc:
        raise PolicyError(f"{source}: server: {exc}") from None
