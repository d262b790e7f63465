"""The registry loads, and a broken registry fails with the key that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry import ENTERPRISE_FILE as REGISTRY_PATH
from registry.loader import RegistryError, load_registry


def test_the_committed_registry_defines_every_kpi() -> None:
    registry = load_registry()
    assert registry.kpi_names[:4] == ["active_customers", "new_customers", "churned_customers", "delinquent_customers"]
    assert {
        "mrr_usd",
        "arr_usd",
        "bookings_usd",
        "billings_usd",
        "revenue_usd",
        "cash_collected_usd",
        "open_ar_usd",
        "mqls",
        "sqls",
        "pipeline_usd",
        "opportunities_won",
    } <= set(registry.kpi_names)
    assert registry.delinquency_days == 60 and registry.mql_score_threshold == 60
    assert "gmail.com" in registry.free_mail_domains
    assert registry.kpi("mrr_usd").label == "Monthly recurring revenue (MRR)"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["delinquency"].pop("days_past_due"), "delinquency.days_past_due"),
        (lambda d: d["mql"].__setitem__("score_threshold", "sixty"), "mql.score_threshold"),
        (lambda d: d["kpis"][0].pop("owner"), "kpis[0]"),
        (lambda d: d["kpis"][2].pop("label"), "kpis[2]"),  # every KPI has a business name for people
        (lambda d: d["kpis"][1].__setitem__("kind", "level"), "stock or flow"),
        (lambda d: d["usage"].pop("late_arrival_hours"), "late_arrival_hours"),
        (lambda d: d["usage"]["health_score"]["deductions"].__setitem__("bad_mood", {"points": 5}), "bad_mood"),
        (lambda d: d["usage_kpis"][0].pop("formula"), "usage_kpis[0]"),
    ],
)
def test_a_broken_registry_names_the_problem(tmp_path: Path, mutate: object, message: str) -> None:
    data = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RegistryError, match=message.replace("[", r"\[")):
        load_registry(path)


def test_the_usage_definitions_and_kpis() -> None:
    """Usage KPIs sit beside the others (the pipeline does not compute them yet); one adoption KPI per feature."""
    registry = load_registry()
    usage = registry.usage
    assert usage.late_arrival_hours == 72 and usage.late_arrival_days == 3
    assert usage.feature_names == ["reports", "dashboards", "workflows", "integrations", "collaboration", "exports"]
    names = registry.usage_kpi_names
    assert [n for n in names if n.startswith("feature_adoption_")] == [
        f"feature_adoption_{f}" for f in usage.feature_names
    ]
    assert {"usage_events", "daily_active_users", "weekly_active_users", "monthly_active_users"} <= set(names)
    assert {"usage_active_customers", "usage_per_seat", "at_risk_customers"} <= set(names)
    assert not set(names) & set(registry.kpi_names)
    assert usage.health_score.points("usage_decline") == 40 and usage.health_score.at_risk_below == 50
