"""The enterprise registry: one versioned YAML file of agreed definitions, loaded into typed objects.

The simulator's truth, the dbt project and the catalog all read this one file, so a definition changes
in one place. Loading validates the shape eagerly: a typo in the registry should fail loudly with the
key that is wrong, not surface later as a silently different KPI.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from registry import DOMAINS_DIR, ENTERPRISE_FILE


class RegistryError(ValueError):
    """The registry file is missing a key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Kpi:
    name: str
    description: str
    formula: str
    unit: str
    kind: str  # stock (a level at day end) or flow (a sum over the day)
    owner: str
    grain: str = "day"
    label: str = ""  # the business name people read (required of the published KPIs)


@dataclass(frozen=True)
class PlausibilityBound:
    max_change_pct: float
    min_base: float


@dataclass(frozen=True)
class ExpectedChange:
    kpi: str
    date: dt.date
    reason: str


@dataclass(frozen=True)
class ExpectedSpike:
    table: str
    date: dt.date
    reason: str


@dataclass(frozen=True)
class VolumeBreaker:
    lookback_days: int = 35
    min_history_days: int = 5
    max_ratio: float = 5.0
    min_rows: int = 100
    expected_spikes: tuple[ExpectedSpike, ...] = ()


# The facts a customer-state condition may use; dbt and the simulator's truth compute each of them.
STATE_FACTS = ("live_contracts", "paused_contracts", "ever_live", "ever_signed", "delinquent")
_CONDITION_WORDS = {"and", "or", "not", "otherwise", *STATE_FACTS}
_CONDITION = re.compile(r"^[a-z_0-9<>=!() ]+$")


@dataclass(frozen=True)
class StateRule:
    name: str
    when: str  # a condition over STATE_FACTS, or "otherwise"
    entered_from: tuple[str, ...] = ()  # the states a customer may be in the day before it enters this one


def _state_rules(items: list[Any], path: Path) -> tuple[StateRule, ...]:
    """The states in evaluation order, each condition checked to use only the known facts (it becomes SQL)."""
    rules = []
    for i, item in enumerate(items):
        when = str(item.get("when", "")).strip()
        words = set(re.findall(r"[a-z_]+", when))
        if not when or not _CONDITION.match(when) or not words <= _CONDITION_WORDS:
            unknown = ", ".join(sorted(words - _CONDITION_WORDS)) or when or "(missing)"
            raise RegistryError(f"{path}: customer_states[{i}] ({item.get('name')}) `when` uses {unknown}")
        rules.append(StateRule(str(item["name"]), when, tuple(str(s) for s in item.get("entered_from") or ())))
    if rules[-1].when != "otherwise" or any(r.when == "otherwise" for r in rules[:-1]):
        raise RegistryError(f"{path}: customer_states: the last state, and only it, has `when: otherwise`")
    names = {r.name for r in rules}
    for rule in rules:
        if strays := sorted(set(rule.entered_from) - names):
            raise RegistryError(f"{path}: customer_states ({rule.name}) `entered_from` names no state: {strays}")
    return tuple(rules)


HEALTH_RULES = ("usage_decline", "low_seat_use", "delinquent", "paused")


@dataclass(frozen=True)
class HealthScore:
    start: int = 100
    at_risk_below: int = 50
    trend_days: int = 14
    # rule (one of HEALTH_RULES) -> points lost when it holds
    deductions: tuple[tuple[str, int], ...] = (
        ("usage_decline", 40),
        ("low_seat_use", 20),
        ("delinquent", 25),
        ("paused", 30),
    )

    def points(self, rule: str) -> int:
        return dict(self.deductions).get(rule, 0)


@dataclass(frozen=True)
class Usage:
    """What counts as using the product, and the windows of its KPIs (registry: usage)."""

    late_arrival_hours: int = 72
    excluded_user_agent_patterns: tuple[str, ...] = ()
    seat_assigned: str = "seat.assigned"
    seat_revoked: str = "seat.revoked"
    weekly_days: int = 7
    monthly_days: int = 28
    session_gap_minutes: int = 30
    features: tuple[tuple[str, tuple[str, ...]], ...] = ()  # feature -> its event types
    adoption_window_days: int = 28
    health_score: HealthScore = field(default_factory=HealthScore)

    @property
    def feature_names(self) -> list[str]:
        return [name for name, _ in self.features]

    @property
    def late_arrival_days(self) -> int:
        """Days after its own on which a day's usage can still change (a day ends at midnight)."""
        return -(-self.late_arrival_hours // 24)


@dataclass(frozen=True)
class SourceRelease:
    """A release of a system of record that changed what it delivers, from a business date on."""

    system: str
    release: str
    date: dt.date
    change: str


# The days an open-ended period of definitions covers (as the window macros do: transforms/macros/window.sql).
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2999, 12, 31)


@dataclass(frozen=True)
class DefinitionPeriod:
    """The definitions in force from ``effective_from`` to ``effective_to`` (both included)."""

    effective_from: dt.date
    effective_to: dt.date
    registry: Registry


@dataclass(frozen=True)
class Registry:
    version: str
    raw: dict[str, Any]
    kpis: tuple[Kpi, ...]
    delinquency_days: int
    mql_score_threshold: int
    free_mail_domains: tuple[str, ...]
    sql_accepted_status: str
    legal_suffixes: tuple[str, ...]
    currencies: tuple[str, ...]
    revenue_account_prefix: str
    month_close_business_day: int
    live_contract_states: tuple[str, ...]
    customer_states: tuple[StateRule, ...]  # in the order they are evaluated: first match wins
    freshness_hour: int  # yesterday published by this hour, UTC
    path: Path
    plausibility: dict[str, PlausibilityBound] = field(default_factory=dict)
    expected_changes: tuple[ExpectedChange, ...] = ()
    overpayment_tolerance: float = 0.01
    volume_breaker: VolumeBreaker = field(default_factory=VolumeBreaker)
    usage: Usage = field(default_factory=Usage)
    # The product's usage KPIs (registry: usage_kpis), one per feature for feature_adoption.
    usage_kpis: tuple[Kpi, ...] = ()
    source_releases: tuple[SourceRelease, ...] = ()
    # The definitions in force per range of days, when a change applies from its effective date (versions.py
    # registry_at); empty: this registry governs every day.
    day_periods: tuple[DefinitionPeriod, ...] = ()

    @property
    def periods(self) -> tuple[DefinitionPeriod, ...]:
        """The registries in force over history, oldest days first: one, unless a change applies from a date."""
        return self.day_periods or (DefinitionPeriod(FIRST_DAY, LAST_DAY, self),)

    def version_on(self, day: dt.date) -> str:
        """The definition version a KPI of ``day`` is computed with."""
        return next(p.registry.version for p in self.periods if p.effective_from <= day <= p.effective_to)

    @property
    def usage_kpi_names(self) -> list[str]:
        return [k.name for k in self.usage_kpis]

    @property
    def kpi_names(self) -> list[str]:
        return [k.name for k in self.kpis]

    def kpi(self, name: str) -> Kpi:
        for kpi in self.kpis:
            if kpi.name == name:
                return kpi
        raise KeyError(f"KPI {name!r} is not defined in the registry {self.path}")

    def source_release(self, system: str, release: str) -> SourceRelease:
        for found in self.source_releases:
            if (found.system, found.release) == (system, release):
                return found
        raise KeyError(f"release {release!r} of {system} is not recorded in the registry {self.path}")

    def with_overrides(self, **changes: Any) -> Registry:
        """A copy with some values replaced (tests change the delinquency threshold this way)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Registry(**values)


def _get(data: dict[str, Any], dotted: str, kind: type, path: Path) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RegistryError(f"{path}: required key '{dotted}' is missing")
        node = node[part]
    if not isinstance(node, kind):
        raise RegistryError(f"{path}: '{dotted}' must be a {kind.__name__}, got {node!r}")
    return node


def read_yaml(path: Path) -> Any:
    """A YAML file's contents, read with libyaml's safe loader when PyYAML has it (the same documents, ten times
    faster than the pure-Python one: every definitions load reads the registry, the policy and each domain)."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate the registry: the given file, else ``DATAOPS_REGISTRY``, else the committed one."""
    reg_path = Path(path) if path else Path(os.environ.get("DATAOPS_REGISTRY") or ENTERPRISE_FILE)
    if not reg_path.exists():
        raise RegistryError(f"registry file not found: {reg_path}")
    data = read_yaml(reg_path)
    if not isinstance(data, dict):
        raise RegistryError(f"{reg_path}: expected a mapping at the top level")
    return registry_from_data(data, reg_path)


def registry_from_data(data: dict[str, Any], reg_path: Path) -> Registry:
    """Validate a registry's contents (a file's, or a file's with definition changes applied: versions.py)."""
    kpis = _kpis(data, "kpis", reg_path, labelled=True)
    usage = _usage(_get(data, "usage", dict, reg_path), reg_path)
    return Registry(
        version=str(_get(data, "version", str, reg_path)),
        raw=data,
        kpis=tuple(kpis),
        delinquency_days=_get(data, "delinquency.days_past_due", int, reg_path),
        mql_score_threshold=_get(data, "mql.score_threshold", int, reg_path),
        free_mail_domains=tuple(_get(data, "mql.free_mail_domains", list, reg_path)),
        sql_accepted_status=_get(data, "sql.accepted_status", str, reg_path),
        legal_suffixes=tuple(_get(data, "customer_schema_rule.legal_suffixes", list, reg_path)),
        currencies=tuple(_get(data, "money.currencies", list, reg_path)),
        revenue_account_prefix=str(_get(data, "general_ledger.revenue_account_prefix", str, reg_path)),
        month_close_business_day=_get(data, "close_calendar.month_close_business_day", int, reg_path),
        live_contract_states=tuple(_get(data, "live_contract_states", list, reg_path)),
        customer_states=_state_rules(_get(data, "customer_states", list, reg_path), reg_path),
        freshness_hour=_get(data, "freshness.published_by_hour_utc", int, reg_path),
        path=reg_path,
        plausibility={
            kpi: PlausibilityBound(float(b["max_change_pct"]), float(b["min_base"]))
            for kpi, b in _get(data, "kpi_plausibility.bounds", dict, reg_path).items()
        },
        expected_changes=tuple(
            ExpectedChange(str(c["kpi"]), dt.date.fromisoformat(str(c["date"])), str(c.get("reason", "")))
            for c in (_get(data, "kpi_plausibility.expected_changes", list, reg_path) or [])
        ),
        overpayment_tolerance=float(_get(data, "data_quality.overpayment_tolerance", float, reg_path)),
        volume_breaker=_volume_breaker(_get(data, "volume_breaker", dict, reg_path)),
        usage=usage,
        usage_kpis=tuple(_kpis(data, "usage_kpis", reg_path, usage.feature_names)),
        source_releases=tuple(
            SourceRelease(str(r["system"]), str(r["release"]), dt.date.fromisoformat(str(r["date"])), str(r["change"]))
            for r in (data.get("source_releases") or [])
        ),
    )


def _kpis(
    data: dict[str, Any], key: str, path: Path, features: list[str] | None = None, *, labelled: bool = False
) -> list[Kpi]:
    """KPI definitions; one ``per_feature`` entry becomes one KPI per feature (``<name>_<feature>``).

    ``labelled``: the published KPIs need a business name (the dashboard and the docs show it to people).
    """
    kpis = []
    required = {"name", "description", "formula", "unit", "kind", "owner"} | ({"label"} if labelled else set())
    for i, item in enumerate(_get(data, key, list, path)):
        missing = required - set(item)
        if missing:
            raise RegistryError(f"{path}: {key}[{i}] lacks {sorted(missing)}")
        if item["kind"] not in {"stock", "flow"}:
            raise RegistryError(f"{path}: {key}[{i}] ({item['name']}) kind must be stock or flow")
        kpi = Kpi(**{k: item[k] for k in Kpi.__dataclass_fields__ if k in item})
        if item.get("per_feature"):
            for feature in features or []:
                kpis.append(
                    Kpi(
                        name=f"{kpi.name}_{feature}",
                        description=f"{kpi.description} (feature: {feature})",
                        label=f"{kpi.label}: {feature}" if kpi.label else "",
                        formula=kpi.formula,
                        unit=kpi.unit,
                        kind=kpi.kind,
                        owner=kpi.owner,
                    )
                )
        else:
            kpis.append(kpi)
    return kpis


def _usage(data: dict[str, Any], path: Path) -> Usage:
    score = _get(data, "health_score", dict, path)
    deductions = _get(score, "deductions", dict, path)
    unknown = set(deductions) - set(HEALTH_RULES)
    if unknown:
        raise RegistryError(f"{path}: usage.health_score.deductions has unknown rules {sorted(unknown)}")
    features = _get(data, "features", dict, path)
    return Usage(
        late_arrival_hours=_get(data, "late_arrival_hours", int, path),
        excluded_user_agent_patterns=tuple(_get(data, "excluded_user_agent_patterns", list, path)),
        seat_assigned=str(_get(data, "seat_events.assigned", str, path)),
        seat_revoked=str(_get(data, "seat_events.revoked", str, path)),
        weekly_days=_get(data, "window_days.weekly", int, path),
        monthly_days=_get(data, "window_days.monthly", int, path),
        session_gap_minutes=_get(data, "session_gap_minutes", int, path),
        features=tuple((str(name), tuple(str(t) for t in types)) for name, types in features.items()),
        adoption_window_days=_get(data, "adoption_window_days", int, path),
        health_score=HealthScore(
            start=_get(score, "start", int, path),
            at_risk_below=_get(score, "at_risk_below", int, path),
            trend_days=_get(score, "trend_days", int, path),
            deductions=tuple((rule, int(_get(spec, "points", int, path))) for rule, spec in deductions.items()),
        ),
    )


def _volume_breaker(data: dict[str, Any]) -> VolumeBreaker:
    return VolumeBreaker(
        lookback_days=int(data["lookback_days"]),
        min_history_days=int(data["min_history_days"]),
        max_ratio=float(data["max_ratio"]),
        min_rows=int(data["min_rows"]),
        expected_spikes=tuple(
            ExpectedSpike(str(s["table"]), dt.date.fromisoformat(str(s["date"])), str(s.get("reason", "")))
            for s in (data.get("expected_spikes") or [])
        ),
    )


def dbt_vars(registry: Registry) -> dict[str, Any]:
    """The registry's values as dbt vars: the models read definitions from here, never from SQL literals."""
    return {
        "registry_version": registry.version,
        "mql_score_threshold": registry.mql_score_threshold,
        "free_mail_domains": list(registry.free_mail_domains),
        "sql_accepted_status": registry.sql_accepted_status,
        "legal_suffixes": list(registry.legal_suffixes),
        "revenue_account_prefix": registry.revenue_account_prefix,
        "live_contract_states": list(registry.live_contract_states),
        "month_close_business_day": registry.month_close_business_day,
        # per period of days (Registry.periods; one unless a change applies from its date): the conditions are
        # SQL, so they come as vars, numbered as the seed registry_definition_periods numbers the periods
        "customer_states": [
            {"period": number, "states": [{"name": r.name, "when": r.when} for r in period.registry.customer_states]}
            for number, period in enumerate(registry.periods, start=1)
        ],
        "usage_seat_events": {"assigned": registry.usage.seat_assigned, "revoked": registry.usage.seat_revoked},
        "usage_window_days": {"weekly": registry.usage.weekly_days, "monthly": registry.usage.monthly_days},
        "usage_features": {name: list(types) for name, types in registry.usage.features},
        "usage_adoption_window_days": registry.usage.adoption_window_days,
        "usage_session_gap_minutes": registry.usage.session_gap_minutes,
        "usage_health_score": {
            "start": registry.usage.health_score.start,
            "at_risk_below": registry.usage.health_score.at_risk_below,
            "trend_days": registry.usage.health_score.trend_days,
            "deductions": dict(registry.usage.health_score.deductions),
        },
    }


def kpi_seed_csv(registry: Registry) -> str:
    """The KPI definitions as a dbt seed, so that dbt docs and the warehouse carry them."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = "kpi_order kpi_name description formula unit kind grain owner definition_version label"
    writer.writerow(columns.split())
    for order, k in enumerate(registry.kpis, start=1):
        writer.writerow(
            [order, k.name, k.description, k.formula, k.unit, k.kind, k.grain, k.owner, registry.version, k.label]
        )
    return buf.getvalue()


def definition_periods_seed_csv(registry: Registry) -> str:
    """The definitions the models evaluate per day, one row per period of days they are in force (a change
    that applies from its effective date starts a period); the models join it on the date."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["period", "definition_version", "effective_from", "effective_to", "delinquency_days", "mql_score_threshold"]
    )
    for number, period in enumerate(registry.periods, start=1):
        rules = period.registry
        writer.writerow(
            [
                number,
                rules.version,
                period.effective_from.isoformat(),
                period.effective_to.isoformat(),
                rules.delinquency_days,
                rules.mql_score_threshold,
            ]
        )
    return buf.getvalue()


def customer_states_seed_csv(registry: Registry) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["precedence", "state", "rule", "definition_version"])
    for order, item in enumerate(registry.raw["customer_states"], start=1):
        writer.writerow([order, item["name"], item["rule"], registry.version])
    return buf.getvalue()


def registry_docs(registry: Registry) -> str:
    """dbt doc blocks rendering the definitions, so that ``dbt docs`` shows them."""

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "/")

    kpi_rows = "\n".join(
        f"| {k.name} | {cell(k.label)} | {cell(k.description)} | {cell(k.formula)} | {k.unit} | {k.kind} | {k.owner} |"
        for k in registry.kpis
    )
    state_rows = "\n".join(f"| {s['name']} | {cell(s['rule'])} |" for s in registry.raw["customer_states"])
    return (
        "{% docs registry_kpis %}\n"
        f"The enterprise KPIs, registry version {registry.version} (generated from registry/enterprise.yaml).\n\n"
        "| KPI | business name | meaning | formula | unit | kind | owner |\n|---|---|---|---|---|---|---|\n"
        f"{kpi_rows}\n"
        "{% enddocs %}\n\n"
        "{% docs registry_customer_states %}\n"
        f"Customer states at the end of each UTC day, first match wins (registry version {registry.version}). "
        f"Delinquent is a flag: an invoice open more than {registry.delinquency_days} days after its due date.\n\n"
        "| state | rule |\n|---|---|\n"
        f"{state_rows}\n"
        "{% enddocs %}\n"
    )


@dataclass
class DomainNote:
    domain: str
    owner: str
    notes: str
    tags: list[str]
    caveats: list[str]
    example_queries: list[str]


def domain_notes(folder: Path = DOMAINS_DIR) -> dict[str, list[DomainNote]]:
    """What each domain team wrote about datasets, from the one file per domain it owns."""
    out: dict[str, list[DomainNote]] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = read_yaml(path) or {}
        for dataset, note in (data.get("datasets") or {}).items():
            out.setdefault(dataset, []).append(
                DomainNote(
                    str(data.get("domain", path.stem)),
                    str(data.get("owner", "")),
                    str(note.get("notes", "")),
                    list(note.get("tags") or []),
                    list(note.get("caveats") or []),
                    list(note.get("example_queries") or []),
                )
            )
    return out


def domain_owners(folder: Path = DOMAINS_DIR) -> dict[str, str]:
    """Each domain's owning team, from its file: the owner of every dataset whose meta names the domain."""
    owners: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = read_yaml(path) or {}
        owners[str(data.get("domain", path.stem))] = str(data.get("owner", ""))
    return owners
