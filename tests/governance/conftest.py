"""A published warehouse with one user per role, and a policy with tight brakes for the braking tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dataops.core.settings import Settings
from dataops.governance.gateway import Gateway
from dataops.governance.policy import POLICY_PATH, Policy, load_policy
from dataops.governance.users import User, add_user
from tests.pipeline import environment

ROLES = ("analyst", "finance", "sales_ops", "marketing_ops", "executive", "data_engineer")


@dataclass
class Governed:
    settings: Settings
    policy: Policy
    tokens: dict[str, str]

    def user(self, role: str) -> User:
        return User(f"{role}_user", role)

    def gateway(self) -> Gateway:
        return Gateway(self.settings, self.policy)


@pytest.fixture(scope="module")
def governed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    root = tmp_path_factory.mktemp("governed")
    shutil.copytree(built, root, dirs_exist_ok=True)
    settings = Settings(root)  # `built` ran the whole job, publishing included
    policy = load_policy()
    tokens = {role: add_user(settings, policy, f"{role}_user", role) for role in ROLES}
    with environment(DATAOPS_DATA_DIR=str(root)):
        yield Governed(settings, policy, tokens)


@pytest.fixture(scope="module")
def braked(governed: Governed, tmp_path_factory: pytest.TempPathFactory) -> Governed:
    """The same warehouse under a policy whose analyst limits are tiny."""
    data = yaml.safe_load(POLICY_PATH.read_text())
    data["limits"]["analyst"] = {"max_scan_rows": 2_000, "statement_timeout_seconds": 1, "max_result_rows": 10}
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return Governed(governed.settings, load_policy(path), governed.tokens)
