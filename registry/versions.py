"""Versions of the enterprise's definitions: the registry file is version v1, each later version one change.

A change is a small YAML document the council writes (docs/definitions.md): its version, author, reason, the
day it was approved and the day it takes effect, whether it restates history or applies from its effective
date on, and the definitions it sets (dotted paths into the registry; list items by name). The registry at a
version is the file with every change up to that version applied, validated as the file itself is, so a
change that breaks a rule of the registry fails to load with the path it got wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.loader import (
    FIRST_DAY,
    LAST_DAY,
    DefinitionPeriod,
    Registry,
    RegistryError,
    load_registry,
    read_yaml,
    registry_from_data,
)

CHANGE_KEYS = {"version", "author", "reason", "approved", "effective", "restates_history", "set"}
DEFAULT_OWNER = "data-governance"
_VERSION = re.compile(r"^v?(\d+)$")
# The definitions the dbt models evaluate per day (seed registry_definition_periods, var customer_states): a
# change to these, or to anything under them, may apply from its effective date. The others hold for every day
# of a build and change by restating history (docs/decisions/0047, 0050 say why each is where it is).
PER_DAY_DEFINITIONS = ("delinquency.days_past_due", "mql.score_threshold", "customer_states")


def per_day(path: str) -> bool:
    """Whether the models evaluate the definition at ``path`` per day (a path under a per-day one counts)."""
    return any(path == root or path.startswith(f"{root}.") for root in PER_DAY_DEFINITIONS)


@dataclass(frozen=True)
class DefinitionChange:
    """One approved change of the definitions: from version ``version - 1`` to ``version``."""

    version: int
    author: str
    reason: str
    approved: dt.date
    effective: dt.date
    restates_history: bool  # True: every day is recomputed; False: it applies to days from `effective` on
    assignments: tuple[tuple[str, Any], ...]  # dotted path -> new value

    @property
    def label(self) -> str:
        return f"v{self.version}"

    @property
    def cause(self) -> str:
        """What a restatement by this change says moved the value."""
        return f"definition change v{self.version - 1} -> v{self.version}"

    @property
    def mode(self) -> str:
        return "restates history" if self.restates_history else f"applies from {self.effective}"

    def in_effect_on(self, day: dt.date) -> bool:
        return self.restates_history or day >= self.effective

    def not_per_day(self) -> list[str]:
        """The paths it sets that the models cannot apply from a date (none when it restates history)."""
        if self.restates_history:
            return []
        return [path for path, _ in self.assignments if not per_day(path)]

    def document(self) -> dict[str, Any]:
        """The change as its YAML file says it (to record it beside the data it was evaluated on)."""
        return {
            "version": self.version,
            "author": self.author,
            "reason": self.reason,
            "approved": self.approved.isoformat(),
            "effective": self.effective.isoformat(),
            "restates_history": self.restates_history,
            "set": dict(self.assignments),
        }


def version_number(label: str | int) -> int:
    """``v2``, ``2`` or 2 -> 2."""
    match = _VERSION.match(str(label).strip())
    if not match:
        raise RegistryError(f"{label!r} is not a definition version (v1, v2, ...)")
    return int(match.group(1))


def _date(value: Any, key: str, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RegistryError(f"{where}: `{key}` must be a date (YYYY-MM-DD), got {value!r}") from None


def change_from_data(data: Any, where: str) -> DefinitionChange:
    """Check a change's document: every key present, nothing else, dates as dates, something to set."""
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: a definition change is a mapping")
    missing, unknown = CHANGE_KEYS - set(data), set(data) - CHANGE_KEYS
    if missing or unknown:
        raise RegistryError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if not isinstance(data["restates_history"], bool):
        raise RegistryError(f"{where}: `restates_history` must be true or false")
    assignments = data["set"]
    if not isinstance(assignments, dict) or not assignments:
        raise RegistryError(f"{where}: `set` names the definitions it changes (path: value)")
    for key in ("author", "reason"):
        if not str(data[key] or "").strip():
            raise RegistryError(f"{where}: `{key}` is empty")
    approved = _date(data["approved"], "approved", where)
    effective = _date(data["effective"], "effective", where)
    return DefinitionChange(
        version=version_number(data["version"]),
        author=str(data["author"]).strip(),
        reason=" ".join(str(data["reason"]).split()),
        approved=approved,
        effective=effective,
        restates_history=data["restates_history"],
        assignments=tuple((str(path), value) for path, value in assignments.items()),
    )


def read_change(path: str | Path) -> DefinitionChange:
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"definition change not found: {path}")
    return change_from_data(read_yaml(path), str(path))


def _assign(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set one existing definition: a change replaces what is agreed, it does not invent new keys."""
    node: Any = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            found = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not found:
                raise RegistryError(f"{where}: `{dotted}`: no item named {part!r} under {'.'.join(parts[:i])}")
            if last:
                raise RegistryError(f"{where}: `{dotted}` names a whole item; set one of its keys")
            node = found[0]
        elif isinstance(node, dict) and part in node:
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            raise RegistryError(f"{where}: `{dotted}`: the registry has no {'.'.join(parts[: i + 1])}")


def check_sequence(base: Registry, changes: Sequence[DefinitionChange]) -> None:
    """Versions follow each other from the base's, one at a time."""
    expected = version_number(base.version) + 1
    for change in sorted(changes, key=lambda c: c.version):
        if change.version != expected:
            raise RegistryError(f"definition change {change.label} does not follow v{expected - 1}")
        expected += 1


def registry_at(
    version: str | int,
    changes: Sequence[DefinitionChange] = (),
    base: str | Path | None = None,
    day: dt.date | None = None,
) -> Registry:
    """The registry at ``version``: the base file with every change up to it applied, in order.

    With ``day``, only the changes in effect on that day: a change that applies from its effective date
    leaves the days before it as the versions before it defined them (labelled with the last change applied).
    Without, the registry also carries those periods of days (``Registry.periods``), which the models follow.
    """
    registry = load_registry(base)
    number = version_number(version)
    check_sequence(registry, changes)
    base_number = version_number(registry.version)
    known = {c.version: c for c in changes}
    if number != base_number and number not in known:
        raise RegistryError(f"definition version v{number} is not known (v{base_number} .. v{max(known, default=1)})")
    applied = [known[n] for n in range(base_number + 1, number + 1)]
    if day is not None:
        return _applied(registry, [c for c in applied if c.in_effect_on(day)], base_number)
    target = _applied(registry, applied, base_number)
    starts = sorted({c.effective for c in applied if not c.restates_history})
    if not starts:
        return target
    bounds = [FIRST_DAY, *starts]
    periods = tuple(
        DefinitionPeriod(
            first,
            (bounds[i + 1] - dt.timedelta(days=1)) if i + 1 < len(bounds) else LAST_DAY,
            _applied(registry, [c for c in applied if c.in_effect_on(first)], base_number),
        )
        for i, first in enumerate(bounds)
    )
    return dataclasses.replace(target, day_periods=periods)


def _applied(registry: Registry, changes: Sequence[DefinitionChange], base_number: int) -> Registry:
    """The base registry with ``changes`` applied in order, labelled with the last one (the base's if none)."""
    data = copy.deepcopy(registry.raw)
    label = base_number
    for change in changes:
        for path, value in change.assignments:
            _assign(data, path, value, f"definition change {change.label}")
        label = change.version
    data["version"] = f"v{label}"
    return registry_from_data(data, registry.path)


def owners_of(change: DefinitionChange, registry: Registry) -> list[str]:
    """Who owns the definitions a change touches: a KPI's own owner, else the section's (definition_owners)."""
    sections = registry.raw.get("definition_owners") or {}
    kpi_owners = {k.name: k.owner for k in (*registry.kpis, *registry.usage_kpis)}
    owners = set()
    for path, _ in change.assignments:
        parts = path.split(".")
        if parts[0] in {"kpis", "usage_kpis"} and len(parts) > 1 and parts[1] in kpi_owners:
            owners.add(kpi_owners[parts[1]])
        else:
            owners.add(str(sections.get(parts[0], DEFAULT_OWNER)))
    return sorted(owners)


__all__ = [
    "PER_DAY_DEFINITIONS",
    "DefinitionChange",
    "change_from_data",
    "check_sequence",
    "owners_of",
    "per_day",
    "read_change",
    "registry_at",
    "version_number",
]
