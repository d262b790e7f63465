"""Which definitions a data directory runs under: the changes it was shown, the version it adopted, who approved.

The registry holds what a definition says at each version (registry/versions.py); adopting a version is an
act on one data directory, so the adopted version is recorded beside its data, under
``Settings.definitions_dir``: ``changes/vN.yaml`` (each change as it was proposed), ``adopted.json`` (the
version the pipeline builds under) and ``history.jsonl`` (every proposal and adoption, for the catalog).
Nothing adopted yet means the registry file's own version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from dataops.core.settings import Settings
from dataops.governance.policy import Policy
from dataops.governance.users import list_users
from registry.loader import Registry, load_registry, read_yaml
from registry.versions import DefinitionChange, change_from_data, owners_of, registry_at, version_number


class ApprovalError(PermissionError):
    """An adoption lacks an approval the policy requires."""


def changes_dir(settings: Settings) -> Path:
    return settings.definitions_dir / "changes"


def adopted_file(settings: Settings) -> Path:
    return settings.definitions_dir / "adopted.json"


def history_file(settings: Settings) -> Path:
    return settings.definitions_dir / "history.jsonl"


def recorded_changes(settings: Settings) -> list[DefinitionChange]:
    """The changes this data directory was shown (``dataops definitions propose``), in version order."""
    folder = changes_dir(settings)
    paths = sorted(folder.glob("v*.yaml"), key=lambda p: version_number(p.stem)) if folder.exists() else []
    return [change_from_data(read_yaml(p), str(p)) for p in paths]


def record_change(settings: Settings, change: DefinitionChange) -> Path:
    path = changes_dir(settings) / f"{change.label}.yaml"
    _write_atomically(path, yaml.safe_dump(change.document(), sort_keys=False))
    return path


def adopted_version(settings: Settings) -> int:
    path = adopted_file(settings)
    if not path.exists():
        return version_number(load_registry().version)
    return int(json.loads(path.read_text())["version"])


def set_adopted(settings: Settings, version: int, at: dt.datetime) -> None:
    _write_atomically(adopted_file(settings), json.dumps({"version": version, "adopted_at": at.isoformat()}))


def registry_for(settings: Settings, version: int | None = None) -> Registry:
    """The registry at ``version`` (default: the adopted one) with the changes this directory recorded."""
    return registry_at(adopted_version(settings) if version is None else version, recorded_changes(settings))


def adopted_registry(settings: Settings) -> Registry:
    """The definitions the pipeline builds and checks under in this data directory."""
    return registry_for(settings)


def append_history(settings: Settings, event: dict[str, Any]) -> None:
    path = history_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(event, default=str, sort_keys=True) + "\n")


def read_history(settings: Settings) -> list[dict[str, Any]]:
    path = history_file(settings)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_text(text)
    os.replace(staged, path)


def changes_between(changes: Sequence[DefinitionChange], old: int, new: int) -> list[DefinitionChange]:
    """The changes that separate two versions, whichever way (a rollback undoes the same ones)."""
    low, high = min(old, new), max(old, new)
    return [c for c in changes if low < c.version <= high]


def required_roles(changes: Sequence[DefinitionChange], registry: Registry, policy: Policy) -> dict[str, list[str]]:
    """Per owner of a definition the changes touch, the roles the policy says must approve."""
    approvals = policy.raw.get("definition_approvals") or {}
    needed: dict[str, list[str]] = {}
    for change in changes:
        for owner in owners_of(change, registry):
            if owner not in approvals:
                raise ApprovalError(f"the policy names no approvers for definitions owned by {owner}")
            unknown = set(approvals[owner]) - set(policy.roles)
            if unknown:
                raise ApprovalError(f"definition_approvals.{owner} names unknown roles {sorted(unknown)}")
            needed[owner] = sorted(set(needed.get(owner, [])) | set(approvals[owner]))
    return needed


@dataclass(frozen=True)
class Approval:
    role: str
    user: str


def check_approvals(settings: Settings, approvers: Sequence[str], needed: dict[str, list[str]]) -> list[Approval]:
    """One distinct approver per required role, each a gateway user (not revoked) holding that role."""
    users = list_users(settings)
    roles: dict[str, list[str]] = {}
    for name in dict.fromkeys(approvers):
        entry = users.get(name)
        if entry is None:
            raise ApprovalError(f"{name} is not a user of this platform (dataops users add)")
        if entry.get("revoked_at"):
            raise ApprovalError(f"{name} was revoked at {entry['revoked_at']}")
        roles.setdefault(str(entry["role"]), []).append(name)
    granted, missing = [], []
    for role in sorted({r for rs in needed.values() for r in rs}):
        if roles.get(role):
            granted.append(Approval(role, roles[role].pop(0)))
        else:
            owners = sorted(owner for owner, rs in needed.items() if role in rs)
            missing.append(f"{role} (for {', '.join(owners)})")
    if missing:
        raise ApprovalError(f"adoption needs an approval from a user with the role {'; '.join(missing)}")
    return granted


def proposal_dir(settings: Settings, version: int) -> Path:
    """A proposal's own data directory: its build warehouse and its impact report, beside the adopted ones."""
    return settings.definitions_dir / "proposals" / f"v{version}"


# The impact report's tables: Parquet files in each proposal's folder, published as `definitions.<name>`.
IMPACT_TABLES = {
    "impact_kpis": "Each KPI per day and month under the adopted and the proposed definitions: old, new, difference.",
    "impact_customers": "Customers whose state or delinquency a proposed definition change moves, and on which days.",
}
DEFINITION_TABLES = {
    **IMPACT_TABLES,
    "history": "Each definition's versions: what it says, who changed it, why, when approved, from when it counts.",
    "adoptions": "Every proposal and adoption of a definition version in this platform, with its approvals.",
}


def definition_tables(settings: Settings) -> dict[str, pl.DataFrame]:
    """What publishing puts under ``definitions.``: each definition's history, the adoptions, the impact
    reports of every proposal (empty tables before the first)."""
    tables = {name: _impact(settings, name) for name in IMPACT_TABLES}
    tables["history"] = _definition_history(settings)
    events = read_history(settings)
    tables["adoptions"] = pl.DataFrame(
        [{k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in e.items()} for e in events],
        schema=ADOPTION_SCHEMA,
    )
    return tables


ADOPTION_SCHEMA = {
    "event": pl.String,
    "version": pl.String,
    "from_version": pl.String,
    "at": pl.String,
    "by": pl.String,
    "reason": pl.String,
    "approvals": pl.String,
}


def _impact(settings: Settings, name: str) -> pl.DataFrame:
    files = sorted((settings.definitions_dir / "proposals").glob(f"v*/{name}.parquet"))
    if files:
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    return pl.DataFrame(schema=IMPACT_SCHEMAS[name])


IMPACT_SCHEMAS: dict[str, dict[str, Any]] = {
    "impact_kpis": {
        "proposal": pl.String,
        "kpi_name": pl.String,
        "grain": pl.String,
        "period": pl.Date,
        "old_value": pl.Decimal(38, 2),
        "new_value": pl.Decimal(38, 2),
        "difference": pl.Decimal(38, 2),
        "old_version": pl.String,
        "new_version": pl.String,
    },
    "impact_customers": {
        "proposal": pl.String,
        "customer_id": pl.String,
        "movement": pl.String,
        "old_state": pl.String,
        "new_state": pl.String,
        "old_delinquent": pl.Boolean,
        "new_delinquent": pl.Boolean,
        "first_day": pl.Date,
        "last_day": pl.Date,
        "days": pl.Int64,
    },
}


def _definition_history(settings: Settings) -> pl.DataFrame:
    """One row per definition and version: the registry file's value (v1), then each change's."""
    base = load_registry()
    changes = recorded_changes(settings)
    adopted: dict[str, list[str]] = {}
    for event in read_history(settings):
        if event.get("event") == "adopted":
            adopted.setdefault(str(event["version"]), []).append(str(event["at"]))
    rows = []
    for path in dict.fromkeys(p for c in changes for p, _ in c.assignments):
        rows.append(_history_row(path, _value(base.raw, path), base.version, str(base.raw.get("owner", "")), adopted))
        for change in changes:
            for changed, value in change.assignments:
                if changed == path:
                    rows.append(_history_row(path, value, change.label, change.author, adopted, change))
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA)


HISTORY_SCHEMA = {
    "definition": pl.String,
    "version": pl.String,
    "value": pl.String,
    "author": pl.String,
    "reason": pl.String,
    "approved": pl.Date,
    "effective": pl.Date,
    "mode": pl.String,
    "adopted_at": pl.String,
}


def _history_row(
    path: str,
    value: Any,
    version: str,
    author: str,
    adopted: dict[str, list[str]],
    change: DefinitionChange | None = None,
) -> dict[str, Any]:
    return {
        "definition": path,
        "version": version,
        "value": json.dumps(value),
        "author": author,
        "reason": change.reason if change else "the registry file (registry/enterprise.yaml)",
        "approved": change.approved if change else None,
        "effective": change.effective if change else None,
        "mode": change.mode if change else "from the start",
        "adopted_at": json.dumps(adopted.get(version, [])),
    }


def _value(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if isinstance(node, list):
            node = next((item for item in node if isinstance(item, dict) and item.get("name") == part), None)
        elif isinstance(node, dict):
            node = node.get(part)
        if node is None:
            return None
    return node


def definition_files(settings: Settings) -> list[Path]:
    """Every file of the definitions' record, for the digest of what a publish is made from."""
    folder = settings.definitions_dir
    found = [adopted_file(settings), history_file(settings), *sorted(changes_dir(settings).glob("v*.yaml"))]
    found += sorted((folder / "proposals").glob("v*/*.parquet"))
    return [p for p in found if p.exists()]
