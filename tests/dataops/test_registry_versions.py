"""The registry resolves at any definition version; a change is checked before it is applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from registry.loader import (
    FIRST_DAY,
    LAST_DAY,
    RegistryError,
    dbt_vars,
    definition_periods_seed_csv,
    load_registry,
)
from registry.versions import (
    DefinitionChange,
    change_from_data,
    owners_of,
    per_day,
    read_change,
    registry_at,
)
from source_systems.simulator.run import truth_kpis

pytestmark = pytest.mark.xdist_group("tiny")

DELINQUENT_NOT_ACTIVE = "live_contracts > 0 and not delinquent"
V2 = {"customer_states.active.when": DELINQUENT_NOT_ACTIVE, "delinquency.days_past_due": 10}


def change(version: int = 2, restates: bool = True, assignments: dict[str, Any] | None = None) -> DefinitionChange:
    return change_from_data(
        {
            "version": version,
            "author": "finance council",
            "reason": "a delinquent customer is not active",
            "approved": "2025-01-10",
            "effective": "2025-01-20",
            "restates_history": restates,
            "set": assignments or V2,
        },
        "test",
    )


def test_the_committed_registry_is_version_v1_and_resolves_at_it() -> None:
    assert load_registry().version == "v1"
    assert registry_at("v1").raw == load_registry().raw


def test_a_version_applies_its_changes_in_order_and_labels_the_registry() -> None:
    v2 = change(2)
    v3 = change(3, assignments={"mql.score_threshold": 65, "delinquency.days_past_due": 30})
    at2, at3 = registry_at("v2", [v2, v3]), registry_at(3, [v2, v3])
    assert at2.version == "v2" and at3.version == "v3"
    assert at2.customer_states[0].when == DELINQUENT_NOT_ACTIVE and at2.mql_score_threshold == 60
    assert (at3.mql_score_threshold, at3.delinquency_days) == (65, 30)
    assert at3.customer_states[0].when == DELINQUENT_NOT_ACTIVE
    assert registry_at(1, [v2, v3]).customer_states[0].when == "live_contracts > 0"  # the base is untouched


def test_a_change_that_applies_from_its_date_leaves_the_days_before_it_alone() -> None:
    v2 = change(2, restates=False)
    before = registry_at(2, [v2], day=dt.date(2025, 1, 19))
    after = registry_at(2, [v2], day=dt.date(2025, 1, 20))
    assert (before.version, before.customer_states[0].when) == ("v1", "live_contracts > 0")
    assert (after.version, after.customer_states[0].when) == ("v2", DELINQUENT_NOT_ACTIVE)
    restating = registry_at(2, [change(2)], day=dt.date(2024, 1, 1))
    assert restating.version == "v2"


def test_a_registry_carries_the_periods_of_days_the_models_follow() -> None:
    """An applies-from change splits history at its date: the days before keep the version before (and any
    restating change), the days from it carry the new one; the seed the models join on the date says so."""
    delinquency = {"delinquency.days_past_due": 5}
    v2, v3 = change(2, assignments={"mql.score_threshold": 65}), change(3, restates=False, assignments=delinquency)
    at3 = registry_at(3, [v2, v3])
    spans = [(p.effective_from, p.effective_to, p.registry.version, p.registry.delinquency_days) for p in at3.periods]
    assert spans == [
        (FIRST_DAY, dt.date(2025, 1, 19), "v2", 60),
        (dt.date(2025, 1, 20), LAST_DAY, "v3", 5),
    ]
    assert all(p.registry.mql_score_threshold == 65 for p in at3.periods)  # v2 restates every day
    assert (at3.version_on(dt.date(2025, 1, 19)), at3.version_on(dt.date(2025, 1, 20))) == ("v2", "v3")
    assert definition_periods_seed_csv(at3).splitlines()[1:] == [
        "1,v2,1900-01-01,2025-01-19,60,65",
        "2,v3,2025-01-20,2999-12-31,5,65",
    ]
    assert [p.registry.version for p in registry_at(2, [v2, v3]).periods] == ["v2"]  # rolled back: one period
    assert registry_at(3, [v2, change(3, assignments=delinquency)]).periods[0].effective_to == LAST_DAY


def test_only_what_the_models_evaluate_per_day_can_apply_from_a_date() -> None:
    """The delinquency rule, the MQL threshold and the customer states (a condition, or the whole ordered list)
    apply per day; the others (the revenue accounts, free-mail domains, ...) only by restating history."""
    per_day_paths = {
        "delinquency.days_past_due": 5,
        "mql.score_threshold": 65,
        "customer_states.active.when": "ever_live",
    }
    assert change(2, restates=False, assignments=per_day_paths).not_per_day() == []
    assert per_day("customer_states") and not per_day("customer_states_extra")
    fixed = {"general_ledger.revenue_account_prefix": "41", "mql.free_mail_domains": ["gmail.com"], **per_day_paths}
    assert change(2, restates=False, assignments=fixed).not_per_day() == [
        "general_ledger.revenue_account_prefix",
        "mql.free_mail_domains",
    ]
    assert change(2, assignments=fixed).not_per_day() == []  # restated: one set of definitions for every day


def test_the_state_rules_reach_dbt_per_period_of_days() -> None:
    """A change of a state's condition from a date gives dbt one list of states per period, numbered as the
    seed numbers them; without periods, one list."""
    applied = registry_at(2, [change(2, restates=False)])
    rules = dbt_vars(applied)["customer_states"]
    assert [p["period"] for p in rules] == [1, 2]
    assert rules[0]["states"][0]["when"] == "live_contracts > 0"
    assert rules[1]["states"][0]["when"] == DELINQUENT_NOT_ACTIVE
    assert [p["period"] for p in dbt_vars(registry_at(1))["customer_states"]] == [1]
    assert definition_periods_seed_csv(applied).splitlines()[0].split(",")[-1] == "mql_score_threshold"


@pytest.mark.parametrize(
    ("changes", "version", "message"),
    [
        ([change(3)], 3, "does not follow v1"),
        ([change(2)], 4, "v4 is not known"),
        ([change(2, assignments={"customer_states.active.when": "live_contracts > 0 and revenue > 5"})], 2, "revenue"),
        ([change(2, assignments={"customer_states.dormant.when": "ever_live"})], 2, "no item named 'dormant'"),
        ([change(2, assignments={"delinquency.grace_days": 3})], 2, "no delinquency.grace_days"),
        ([change(2, assignments={"mql.score_threshold": "sixty-five"})], 2, "mql.score_threshold"),
    ],
)
def test_a_broken_change_fails_with_what_it_got_wrong(
    changes: list[DefinitionChange], version: int, message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        registry_at(version, changes)


def test_a_change_document_names_every_field(tmp_path: Path) -> None:
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump({**change(2).document(), "approved": None}))
    with pytest.raises(RegistryError, match="`approved` must be a date"):
        read_change(path)
    path.write_text(yaml.safe_dump({k: v for k, v in change(2).document().items() if k != "reason"}))
    with pytest.raises(RegistryError, match=r"missing \['reason'\]"):
        read_change(path)
    path.write_text(yaml.safe_dump(change(2).document()))
    assert read_change(path) == change(2)


def test_a_change_is_owned_by_the_owners_of_what_it_touches() -> None:
    registry = load_registry()
    assert owners_of(change(2), registry) == ["finance-ops"]
    both = change(2, assignments={"mql.score_threshold": 65, "kpis.pipeline_usd.formula": "open amounts"})
    assert owners_of(both, registry) == ["marketing-ops", "sales-ops"]
    assert owners_of(change(2, assignments={"freshness.published_by_hour_utc": 7}), registry) == ["data-governance"]


def test_the_truth_computes_the_kpis_under_any_version(tiny_sources: Path) -> None:
    """v2 (delinquent after 10 days, and delinquent customers are not active) lowers active customers on
    some day; applied from a date, it leaves the days before that date exactly as v1 has them."""
    v1 = truth_kpis(tiny_sources, lambda day: registry_at(1))
    restated = truth_kpis(tiny_sources, lambda day: registry_at(2, [change(2)], day=day))
    days = sorted(set(v1["date"]))
    middle = days[len(days) // 2]
    from_date = change(2, restates=False)
    from_date = DefinitionChange(**{**from_date.__dict__, "effective": middle})
    applied = truth_kpis(tiny_sources, lambda day: registry_at(2, [from_date], day=day))

    def active(frame: pl.DataFrame) -> dict[dt.date, int]:
        return dict(frame.filter(pl.col("kpi") == "active_customers").select("date", "value").iter_rows())

    assert set(restated["definition_version"]) == {"v2"} and set(v1["definition_version"]) == {"v1"}
    assert all(active(restated)[d] <= active(v1)[d] for d in days)
    assert sum(active(v1).values()) > sum(active(restated).values())  # the change moves the truth
    assert all(active(applied)[d] == active(v1)[d] for d in days if d < middle)
    assert all(active(applied)[d] == active(restated)[d] for d in days if d >= middle)
    assert applied.filter(pl.col("date") < middle)["definition_version"].unique().to_list() == ["v1"]
