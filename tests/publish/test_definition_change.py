"""Definition changes end to end on one small simulated platform: a change that applies from its date and a
change that restates history, each proposed (impact report, analysts untouched), adopted (approvals,
restatements with the cause, every KPI every day equal to the truth under the version in force that day) and
rolled back; a per-day state rule checked against the truth; and the guards."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from dataops.core.settings import Settings
from dataops.core.warehouse import connect
from dataops.governance import audit
from dataops.governance.definition_versions import ApprovalError, adopted_version, recorded_changes
from dataops.governance.policy import load_policy
from dataops.governance.users import add_user
from dataops.publish import definition_change
from dataops.publish.definition_change import DefinitionRefused, adopt, build_and_check, propose
from dataops.transform.runner import run_dbt
from registry.loader import Registry, RegistryError
from registry.versions import change_from_data, registry_at
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate, truth_kpis
from tests.pipeline import definitions_loaded_once, run_job

# one pipeline run, four dbt builds (an adoption as proposed reuses the proposal's) and one daily run, ten days
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("definitions"), pytest.mark.timeout(1800)]

# Ten days over a month's end: January's days keep v1 when a change applies from February 1.
START, DAYS = dt.date(2025, 1, 27), 10
END = START + dt.timedelta(days=DAYS - 1)
EFFECTIVE = dt.date(2025, 2, 1)
# Without late journal lines and held-back payments, the values known at the window's end are final.
CONFIG = SimConfig(
    seed=11,
    scale=0.03,
    start=START,
    dirt=DirtRates(late_journal=0.0, held_back_payment=0.0),
    product_events=False,
)
REASON = "the marketing council: an MQL needs a score of 65, from February on"
V2 = {
    "version": 2,
    "author": "marketing council",
    "reason": REASON,
    "approved": "2025-01-25",
    "effective": EFFECTIVE.isoformat(),
    "restates_history": False,
    "set": {"mql.score_threshold": 65},
}
RESTATING = "the marketing council: an MQL needs a score of 50, for every day"
V3 = {**V2, "version": 3, "reason": RESTATING, "effective": START.isoformat(), "restates_history": True}
V3["set"] = {"mql.score_threshold": 50}
APPROVERS = {"fiona": "finance", "mark": "marketing_ops", "dana": "data_engineer"}
MARKETING = ["mark", "dana"]  # what marketing-ops, the owner of `mql`, needs (registry/policy.yaml)


# The platform's two daily runs share one data directory: its definitions are loaded once (by the first run, in
# its environment); each run reads the adopted registry from the data directory as it runs.
DEFINITIONS = definitions_loaded_once()


@pytest.fixture(scope="module", autouse=True)
def dbt_in_this_process() -> Iterator[None]:
    """The proposals', adoptions' and the state rule's builds run dbt in this process (its start-up paid once,
    as the daily runs' modules are): the same command, project, vars and data directory; the tests are about
    what is built and checked, not about dbt's process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(definition_change, "run_dbt", functools.partial(run_dbt, in_process=True))
        yield


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("definitions")
    settings = Settings(root)
    simulate(settings.sources_dir, END, CONFIG)
    assert run_job(root, START, END, definitions=DEFINITIONS).success
    policy = load_policy()
    for name, role in APPROVERS.items():
        add_user(settings, policy, name, role)
    yield settings


def change_file(folder: Path, document: dict[str, object]) -> Path:
    path = folder / f"v{document['version']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def published(settings: Settings, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        return conn.sql(sql).pl()


def truth_on(settings: Settings, registry_on_day: Callable[[dt.date], Registry]) -> pl.DataFrame:
    truth = truth_kpis(settings.sources_dir, registry_on_day)
    return truth.rename({"date": "date_day", "kpi": "kpi_name", "value": "truth", "definition_version": "version"})


def truth_under(settings: Settings, version: int) -> pl.DataFrame:
    """The truth's daily KPIs, each day under the definitions in force on it at ``version``."""
    changes = recorded_changes(settings)
    return truth_on(settings, lambda day: registry_at(version, changes, day=day))


def differences(got: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Daily KPIs that differ from the truth in value or in the version of the day (every KPI, every day)."""
    joined = truth.join(got, on=["date_day", "kpi_name"], how="full", coalesce=True)
    return joined.filter(
        (pl.col("truth") != pl.col("value"))
        | (pl.col("version") != pl.col("definition_version"))
        | pl.any_horizontal(pl.col("truth", "value", "version", "definition_version").is_null())
    )


def against_truth(settings: Settings, version: int, days: int) -> pl.DataFrame:
    """Published daily KPIs that differ from the truth under ``version``."""
    got = published(settings, "select date_day, kpi_name, value, definition_version from kpis.kpi_daily")
    assert got.height == days * len(registry_at(1).kpis)
    return differences(got, truth_under(settings, version))


def mark_build(path: Path) -> None:
    """Mark a proposal's kept build, to tell whether adoption swapped it in or built again."""
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.kept_proposal_build as select 1 as marked")


def unmark_build(path: Path) -> bool:
    """Whether the build carries the mark (then removed)."""
    with duckdb.connect(str(path)) as conn:
        marked = conn.execute("select count(*) from duckdb_tables() where table_name = 'kept_proposal_build'")
        found = marked.fetchall()[0][0] > 0
        conn.execute("drop table if exists main.kept_proposal_build")
    return bool(found)


def monthly_versions(settings: Settings) -> dict[dt.date, set[str]]:
    frame = published(settings, "select month_start_date, definition_version from kpis.kpi_monthly")
    return {m: set(f["definition_version"]) for (m,), f in frame.group_by("month_start_date")}


def restated_by(settings: Settings, publish_id: str) -> pl.DataFrame:
    restated = published(settings, "select * from publish.kpi_restatements")
    return restated.filter(pl.col("publish_id") == publish_id)


def test_a_change_from_its_date_and_a_restating_one_proposed_adopted_and_rolled_back(
    platform: Settings, tmp_path: Path
) -> None:
    """v2 applies from February 1: only the days from it move, each day under the version in force on it, and
    the next daily run follows. v3 restates every day. Rolling v3 back to v2 restores v2's values. Adopting
    as proposed swaps the proposal's checked build in (tests/publish/test_proposed_build.py: not when anything
    changed since)."""
    settings = platform
    analyst_file = settings.analytics_db.read_bytes()
    assert against_truth(settings, 1, DAYS).height == 0

    # propose v2: the impact is reported, from the effective date only; analysts see nothing of it
    proposal = propose(settings, change_file(tmp_path, V2))
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
    assert "mqls" in set(moved["kpi_name"]) and set(moved["kpi_name"]) <= {"mqls", "sqls"}
    assert moved["period"].min() >= EFFECTIVE

    # adoption needs the approvals the policy names for the definition's owner (marketing-ops), audited either way
    with pytest.raises(ApprovalError, match="marketing_ops"):
        adopt(settings, "v2", ["fiona", "dana"])
    assert audit.read(settings)[-1]["outcome"] == "refused"
    assert settings.analytics_db.read_bytes() == analyst_file

    # adopted as proposed: nothing ran since the proposal, so its checked build is the one swapped in
    mark_build(proposal.folder / "build.duckdb")
    adoption = adopt(settings, "v2", MARKETING)
    assert adopted_version(settings) == 2 and unmark_build(settings.build_db)
    assert not (proposal.folder / "build.duckdb").exists()
    assert against_truth(settings, 2, DAYS).height == 0  # January under v1, February on under v2
    by_adoption = restated_by(settings, adoption.publish.publish_id)
    assert by_adoption.height == adoption.publish.restatements > 0
    assert set(by_adoption["cause"]) == {f"definition change v1 -> v2: {REASON}"}
    by_day = by_adoption.filter(pl.col("grain") == "day")
    assert sorted(by_day.select("kpi_name", "period").rows()) == sorted(moved.select("kpi_name", "period").rows())
    assert by_adoption["period"].min() >= EFFECTIVE  # nothing before the effective date is restated
    assert monthly_versions(settings) == {START.replace(day=1): {"v1"}, EFFECTIVE: {"v2"}}
    catalog = published(settings, "select dataset, row_count from catalog.datasets where dataset like 'definitions.%'")
    assert dict(catalog.rows())["definitions.impact_kpis"] == impact.height
    history = published(settings, "select definition, version, value from definitions.history order by all")
    assert {("mql.score_threshold", "v1", "60"), ("mql.score_threshold", "v2", "65")} <= set(history.rows())
    entry = audit.read(settings)[-1]
    assert entry["outcome"] == "adopted" and {a["user"] for a in entry["approvals"]} == set(MARKETING)

    # the next day's run builds and gates under the adopted periods (the gate refuses values of another version)
    simulate(settings.sources_dir, END + dt.timedelta(days=1), CONFIG)
    next_day = END + dt.timedelta(days=1)
    assert run_job(settings.data_dir, next_day, next_day, definitions=DEFINITIONS).success
    days = DAYS + 1
    assert against_truth(settings, 2, days).height == 0

    # v3 restates history: every day moves to v3, January included
    proposal = propose(settings, change_file(tmp_path, V3))
    restating = pl.read_parquet(proposal.tables["impact_kpis"]).filter(pl.col("grain") == "day")
    assert set(restating["new_version"]) == {"v3"}
    assert restating.filter(pl.col("difference") != 0)["period"].min() < EFFECTIVE

    # adopted as proposed (no run since): the proposal's build again
    mark_build(proposal.folder / "build.duckdb")
    adoption = adopt(settings, "v3", MARKETING)
    assert unmark_build(settings.build_db)
    assert against_truth(settings, 3, days).height == 0
    by_adoption = restated_by(settings, adoption.publish.publish_id)
    assert set(by_adoption["cause"]) == {f"definition change v2 -> v3: {RESTATING}"}
    assert by_adoption["period"].min() < EFFECTIVE
    assert monthly_versions(settings) == {START.replace(day=1): {"v3"}, EFFECTIVE: {"v3"}}

    # rolling back is adopting the version before: v2's values again, restated with their own cause
    back = adopt(settings, "v2", MARKETING, reason="the council withdrew v3")
    assert against_truth(settings, 2, days).height == 0
    rolled = restated_by(settings, back.publish.publish_id)
    assert set(rolled["cause"]) == {"definition change v3 -> v2: rolled back (the council withdrew v3)"}
    assert rolled.height > 0 and (rolled["new_value"] != rolled["old_value"]).all()
    assert monthly_versions(settings) == {START.replace(day=1): {"v1"}, EFFECTIVE: {"v2"}}
    events = published(settings, "select event, version from definitions.adoptions")
    assert events.rows() == [
        ("proposed", "v2"),
        ("adopted", "v2"),
        ("proposed", "v3"),
        ("adopted", "v3"),
        ("adopted", "v2"),
    ]


def test_a_state_rule_from_a_date_follows_the_truth_and_the_gate_refuses_what_breaks_a_rule(
    platform: Settings, tmp_path: Path
) -> None:
    """Active only with two live contracts, from February 1: built aside, every KPI every day equals the truth
    under the rule in force on the day, and the gate's rule that a churned customer has nothing live refuses
    it. A proposal is refused before anything is recorded or published."""
    change = change_from_data({**V2, "set": {"customer_states.active.when": "live_contracts > 1"}}, "test")
    registry = registry_at(2, [change])
    aside = Settings(tmp_path / "aside")
    aside.warehouse_dir.mkdir(parents=True)
    with connect(platform.build_db) as conn:
        conn.execute("checkpoint")
    shutil.copyfile(platform.build_db, aside.build_db)
    with pytest.raises(DefinitionRefused, match="churned_customer_has_no_live_or_paused_contract"):
        build_and_check(aside, registry)
    with duckdb.connect(str(aside.build_db), read_only=True) as conn:
        got = conn.sql("select date_day, kpi_name, value, definition_version from kpis.kpi_daily").pl()
    truth = truth_on(platform, lambda day: registry_at(2, [change], day=day)).filter(
        pl.col("date_day").is_in(got["date_day"].unique().implode())
    )
    assert differences(got, truth).height == 0
    v1 = truth_on(platform, lambda day: registry_at(1)).filter(pl.col("date_day").is_in(got["date_day"].implode()))
    moved = truth.join(v1, on=["date_day", "kpi_name"]).filter(pl.col("truth") != pl.col("truth_right"))
    assert moved.height > 0 and moved["date_day"].min() >= EFFECTIVE and "active_customers" in set(moved["kpi_name"])

    analyst_file, adopted = platform.analytics_db.read_bytes(), adopted_version(platform)
    following = max([adopted, *(c.version for c in recorded_changes(platform))]) + 1
    broken = {**V2, "version": following, "set": {"customer_states.dormant.when": "ever_live"}}
    with pytest.raises(RegistryError, match="no item named 'dormant'"):
        propose(platform, change_file(tmp_path, broken))
    assert platform.analytics_db.read_bytes() == analyst_file and adopted_version(platform) == adopted
    assert following not in {c.version for c in recorded_changes(platform)}
