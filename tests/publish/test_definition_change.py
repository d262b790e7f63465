"""A definition change end to end: propose (impact report, analysts untouched), adopt (approvals, restatements
with the cause, every KPI every day equal to the truth under the version in force that day), roll back; and
the guards."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.definition_versions import ApprovalError, adopted_version, recorded_changes
from dataops.governance.policy import load_policy
from dataops.governance.users import add_user
from dataops.publish.definition_change import DefinitionRefused, adopt, propose
from registry.versions import registry_at
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate, truth_kpis
from tests.pipeline import run_job

# five dbt builds: under a loaded machine the walk alone has taken over 900 s
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("definitions"), pytest.mark.timeout(1800)]

START, DAYS = dt.date(2025, 1, 1), 40
END = START + dt.timedelta(days=DAYS - 1)
# Without late journal lines and held-back payments, the values known at the window's end are final.
CONFIG = SimConfig(
    seed=11,
    scale=0.04,
    start=START,
    dirt=DirtRates(late_journal=0.0, held_back_payment=0.0),
    product_events=False,
)
REASON = "the finance council: delinquent after 5 days past due, from February on"
# Applies from its date: January keeps v1 (a whole month before it, so kpi_monthly shows both versions).
EFFECTIVE = dt.date(2025, 2, 1)
V2 = {
    "version": 2,
    "author": "finance council",
    "reason": REASON,
    "approved": "2025-01-25",
    "effective": EFFECTIVE.isoformat(),
    "restates_history": False,
    "set": {"delinquency.days_past_due": 5},
}
APPROVERS = {"fiona": "finance", "mark": "marketing_ops", "dana": "data_engineer"}
FINANCE = ["fiona", "dana"]  # what finance-ops, the owner of `delinquency`, needs (registry/policy.yaml)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("definitions")
    settings = Settings(root)
    simulate(settings.sources_dir, END, CONFIG)
    assert run_job(root, START, END).success
    policy = load_policy()
    for name, role in APPROVERS.items():
        add_user(settings, policy, name, role)
    yield settings


def change_file(folder: Path, **overrides: object) -> Path:
    path = folder / f"v{overrides.get('version', 2)}.yaml"
    path.write_text(yaml.safe_dump({**V2, **overrides}))
    return path


def published(settings: Settings, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        return conn.sql(sql).pl()


def truth_under(settings: Settings, version: int) -> pl.DataFrame:
    """The truth's daily KPIs, each day under the definitions in force on it at ``version``."""
    changes = recorded_changes(settings)
    truth = truth_kpis(settings.sources_dir, lambda day: registry_at(version, changes, day=day))
    return truth.rename({"date": "date_day", "kpi": "kpi_name", "value": "truth", "definition_version": "version"})


def against_truth(settings: Settings, version: int, days: int = DAYS) -> pl.DataFrame:
    """Published daily KPIs that differ from the truth under ``version``, in value or in the version of the
    day (every KPI, every day)."""
    got = published(settings, "select date_day, kpi_name, value, definition_version from kpis.kpi_daily")
    assert got.height == days * len(registry_at(1).kpis)
    joined = truth_under(settings, version).join(got, on=["date_day", "kpi_name"], how="full", coalesce=True)
    return joined.filter(
        (pl.col("truth") != pl.col("value"))
        | (pl.col("version") != pl.col("definition_version"))
        | pl.any_horizontal(pl.col("truth", "value", "version", "definition_version").is_null())
    )


def monthly_versions(settings: Settings) -> dict[dt.date, set[str]]:
    frame = published(settings, "select month_start_date, definition_version from kpis.kpi_monthly")
    return {m: set(f["definition_version"]) for (m,), f in frame.group_by("month_start_date")}


def test_propose_adopt_restate_and_roll_back(platform: Settings, tmp_path: Path) -> None:
    """A change that applies from its date: proposed, adopted and rolled back, with only the days from its date
    moving, each day under the version in force on it."""
    settings = platform
    analyst_file = settings.analytics_db.read_bytes()
    assert against_truth(settings, 1).height == 0
    january, february = START, EFFECTIVE

    # propose: the impact is reported, from the effective date only; analysts see nothing of it
    proposal = propose(settings, change_file(tmp_path))
    assert hashlib.sha256(settings.analytics_db.read_bytes()).digest() == hashlib.sha256(analyst_file).digest()
    assert adopted_version(settings) == 1
    impact = pl.read_parquet(proposal.tables["impact_kpis"])
    daily = impact.filter(pl.col("grain") == "day")
    assert daily.height == DAYS * len(registry_at(1).kpis)
    checked = daily.join(truth_under(settings, 2), left_on=["period", "kpi_name"], right_on=["date_day", "kpi_name"])
    assert checked.height == daily.height and (checked["new_value"] == checked["truth"]).all()
    assert (checked["new_version"] == checked["version"]).all()
    assert (daily["difference"] == daily["new_value"] - daily["old_value"]).all()
    moved = daily.filter(pl.col("difference") != 0)
    assert set(moved["kpi_name"]) == {"delinquent_customers"} and moved["period"].min() >= EFFECTIVE
    customers = pl.read_parquet(proposal.tables["impact_customers"])
    assert customers.height > 0 and set(customers["movement"]) == {"becomes delinquent"}
    assert customers["first_day"].min() >= EFFECTIVE
    assert proposal.customers_moved == customers["customer_id"].n_unique()

    # adoption needs the approvals the policy names for the definition's owner (finance-ops), audited either way
    with pytest.raises(ApprovalError, match="finance"):
        adopt(settings, "v2", ["mark", "dana"])
    assert audit.read(settings)[-1]["outcome"] == "refused"
    assert settings.analytics_db.read_bytes() == analyst_file

    adoption = adopt(settings, "v2", FINANCE)
    assert adopted_version(settings) == 2
    assert against_truth(settings, 2).height == 0  # January under v1, February on under v2
    restated = published(settings, "select * from publish.kpi_restatements")
    cause = f"definition change v1 -> v2: {REASON}"
    by_adoption = restated.filter(pl.col("publish_id") == adoption.publish.publish_id)
    assert by_adoption.height == adoption.publish.restatements > 0
    assert set(by_adoption["cause"]) == {cause}
    by_day = by_adoption.filter(pl.col("grain") == "day")
    assert sorted(by_day.select("kpi_name", "period").rows()) == sorted(moved.select("kpi_name", "period").rows())
    assert by_adoption["period"].min() >= EFFECTIVE  # nothing before the effective date is restated
    assert monthly_versions(settings) == {january: {"v1"}, february: {"v2"}}
    catalog = published(settings, "select dataset, row_count from catalog.datasets where dataset like 'definitions.%'")
    assert dict(catalog.rows())["definitions.impact_kpis"] == impact.height
    history = published(settings, "select definition, version, value from definitions.history order by all")
    assert ("delinquency.days_past_due", "v1", "60") in history.rows()
    assert ("delinquency.days_past_due", "v2", "5") in history.rows()
    entry = audit.read(settings)[-1]
    assert entry["outcome"] == "adopted" and {a["user"] for a in entry["approvals"]} == set(FINANCE)

    # the next day's run builds and gates under the adopted periods (the gate refuses values of another version)
    simulate(settings.sources_dir, END + dt.timedelta(days=1), CONFIG)
    assert run_job(settings.data_dir, END + dt.timedelta(days=1), END + dt.timedelta(days=1)).success
    assert against_truth(settings, 2, days=DAYS + 1).height == 0

    # rolling back is adopting the version before: the days from the date restated again, with its own cause
    back = adopt(settings, "v1", FINANCE, reason="the council withdrew v2")
    assert against_truth(settings, 1, days=DAYS + 1).height == 0
    restated = published(settings, "select * from publish.kpi_restatements")
    rolled = restated.filter(pl.col("publish_id") == back.publish.publish_id)
    assert set(rolled["cause"]) == {"definition change v2 -> v1: rolled back (the council withdrew v2)"}
    assert rolled.height >= by_adoption.height and rolled["period"].min() >= EFFECTIVE
    assert monthly_versions(settings) == {january: {"v1"}, february: {"v1"}}
    events = published(settings, "select event, version from definitions.adoptions")
    assert events.rows() == [("proposed", "v2"), ("adopted", "v2"), ("adopted", "v1")]
    assert Decimal(0) not in set(rolled["new_value"] - rolled["old_value"])


def test_a_proposal_that_breaks_a_rule_is_refused_naming_it(platform: Settings, tmp_path: Path) -> None:
    """Everyone active, prospects too: the gate's rule that an active customer has a live contract refuses it."""
    analyst_file, adopted = platform.analytics_db.read_bytes(), adopted_version(platform)
    following = max([adopted, *(c.version for c in recorded_changes(platform))]) + 1
    broken = change_file(
        tmp_path, version=following, restates_history=True, set={"customer_states.active.when": "live_contracts >= 0"}
    )
    with pytest.raises(DefinitionRefused, match="active_customer_has_a_live_contract"):
        propose(platform, broken)
    assert platform.analytics_db.read_bytes() == analyst_file and adopted_version(platform) == adopted
    assert following not in {c.version for c in recorded_changes(platform)}
