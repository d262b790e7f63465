"""An adoption needs one distinct approver per role the policy names for the owners of what the change touches;
the data directory records the changes it was shown and the version it adopted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from application.cli.main import app
from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.definition_versions import (
    ApprovalError,
    adopted_registry,
    adopted_version,
    check_approvals,
    record_change,
    recorded_changes,
    required_roles,
    set_adopted,
)
from dataops.governance.policy import load_policy
from dataops.governance.users import add_user, revoke_user
from dataops.publish.definition_change import DefinitionRefused, adopt
from registry.loader import load_registry
from registry.versions import change_from_data
from tests.pipeline import environment

CHANGE = {
    "version": 2,
    "author": "councils",
    "reason": "stricter",
    "approved": "2025-02-01",
    "effective": "2025-01-01",
    "restates_history": True,
    "set": {"delinquency.days_past_due": 5, "mql.score_threshold": 65},
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(tmp_path)
    policy = load_policy()
    for name, role in {"fiona": "finance", "mark": "marketing_ops", "dana": "data_engineer", "eve": "finance"}.items():
        add_user(settings, policy, name, role)
    return settings


def test_the_policy_names_the_roles_for_each_owner_of_the_change() -> None:
    needed = required_roles([change_from_data(CHANGE, "t")], load_registry(), load_policy())
    assert needed == {"finance-ops": ["data_engineer", "finance"], "marketing-ops": ["data_engineer", "marketing_ops"]}


@pytest.mark.parametrize(
    ("approvers", "message"),
    [
        (["fiona", "dana"], r"marketing_ops \(for marketing-ops\)"),
        (["fiona", "eve", "mark"], r"data_engineer \(for finance-ops, marketing-ops\)"),
        (["fiona", "mark", "dana", "zoe"], "zoe is not a user"),
    ],
)
def test_an_adoption_without_the_approvals_is_refused_naming_the_role(
    settings: Settings, approvers: list[str], message: str
) -> None:
    needed = required_roles([change_from_data(CHANGE, "t")], load_registry(), load_policy())
    with pytest.raises(ApprovalError, match=message):
        check_approvals(settings, approvers, needed)
    granted = check_approvals(settings, ["fiona", "mark", "dana"], needed)
    assert {(a.role, a.user) for a in granted} == {
        ("finance", "fiona"),
        ("marketing_ops", "mark"),
        ("data_engineer", "dana"),
    }
    revoke_user(settings, "dana")
    with pytest.raises(ApprovalError, match="dana was revoked"):
        check_approvals(settings, ["fiona", "mark", "dana"], needed)


def test_the_pipeline_builds_under_the_version_the_data_directory_adopted(settings: Settings) -> None:
    assert adopted_version(settings) == 1 and adopted_registry(settings).version == "v1"
    record_change(settings, change_from_data(CHANGE, "t"))
    assert [c.label for c in recorded_changes(settings)] == ["v2"]
    assert adopted_registry(settings).delinquency_days == 60  # shown, not adopted
    set_adopted(settings, 2, dt.datetime.now(dt.UTC))
    adopted = adopted_registry(settings)
    assert (adopted.version, adopted.delinquency_days, adopted.mql_score_threshold) == ("v2", 5, 65)


def test_the_cli_refuses_a_malformed_proposal_with_what_is_wrong(settings: Settings, tmp_path: Path) -> None:
    proposal = tmp_path / "v2.yaml"
    proposal.write_text(yaml.safe_dump({**CHANGE, "set": {"delinquency.grace_days": 3}}))
    with environment(DATAOPS_DATA_DIR=str(settings.data_dir)):
        result = CliRunner().invoke(app, ["definitions", "propose", str(proposal)])
        assert result.exit_code == 1 and "no delinquency.grace_days" in result.output, result.output
        result = CliRunner().invoke(app, ["definitions", "adopt", "v2", "--approved-by", "fiona"])
        assert result.exit_code == 1 and "v2 was never proposed here" in result.output, result.output
    assert adopted_version(settings) == 1 and not recorded_changes(settings)


def test_a_change_the_models_cannot_apply_from_its_date_is_reported_but_not_adopted(settings: Settings) -> None:
    """Refused before anything is built, naming the path: the revenue accounts from a date (the models evaluate
    them once for every day). The per-day definitions are adopted from their date
    (tests/publish/test_definition_change.py)."""
    revenue = {"general_ledger.revenue_account_prefix": "41", "mql.score_threshold": 65}
    record_change(settings, change_from_data({**CHANGE, "restates_history": False, "set": revenue}, "t"))
    with pytest.raises(DefinitionRefused, match=r"v2: general_ledger.revenue_account_prefix cannot apply from an"):
        adopt(settings, "v2", ["fiona", "mark", "dana"])
    assert adopted_version(settings) == 1
    assert audit.read(settings)[-1]["outcome"] == "refused"


def test_the_history_command_shows_each_definitions_versions(settings: Settings) -> None:
    record_change(settings, change_from_data(CHANGE, "t"))
    with environment(DATAOPS_DATA_DIR=str(settings.data_dir)):
        result = CliRunner().invoke(app, ["definitions", "history"])
    assert result.exit_code == 0, result.output
    assert "adopted: v1" in result.output and "delinquency.days_past_due" in result.output
