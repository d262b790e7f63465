"""The access policy: roles, grants and per-role limits, from one file (registry/policy.yaml).

Who may read what is computed here and only here: the gateway enforces it, publishing splits the files by
it, the catalog and the Dagster UI show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from registry import POLICY_FILE

POLICY_PATH = POLICY_FILE


class PolicyError(ValueError):
    """The policy file is malformed."""


@dataclass(frozen=True)
class Limits:
    max_scan_rows: int
    statement_timeout_seconds: float
    max_result_rows: int
    memory_limit: str
    threads: int


@dataclass(frozen=True)
class Policy:
    roles: tuple[str, ...]
    restricted_grants: dict[str, tuple[str, ...]]
    personal_data_grants: dict[str, tuple[str, ...]]
    limits_by_role: dict[str, Limits]
    how_to_ask: str
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
    """The policy file in force: the given file, else ``DATAOPS_POLICY``, else the committed one."""
    return Path(path or os.environ.get("DATAOPS_POLICY") or POLICY_PATH)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and check the policy (see :func:`policy_path` for which file)."""
    source = policy_path(path)
    try:
        data = yaml.safe_load(source.read_text())
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
        limits[role] = Limits(
            max_scan_rows=int(merged["max_scan_rows"]),
            statement_timeout_seconds=float(merged["statement_timeout_seconds"]),
            max_result_rows=int(merged["max_result_rows"]),
            memory_limit=str(merged["memory_limit"]),
            threads=int(merged["threads"]),
        )
    return Policy(
        roles=roles,
        restricted_grants={k: tuple(v) for k, v in (grants.get("restricted_datasets") or {}).items()},
        personal_data_grants={k: tuple(v) for k, v in (grants.get("personal_data") or {}).items()},
        limits_by_role=limits,
        how_to_ask=str(data.get("how_to_ask", "")),
        raw=data,
    )
