"""Who is asking: identity from the operating system, users that expire in the future and can be revoked,
failed tokens slowed down, and the settings that choose the platform's files honoured for its account only."""

from __future__ import annotations

import datetime as dt
import os
import pwd
from pathlib import Path

import pytest
import yaml

from dataops.core.settings import (
    TRUSTED_VARIABLES,
    Settings,
    UntrustedSetting,
    caller_uid,
    platform_uid,
    trusted_env,
)
from dataops.governance.policy import ServerLimits, load_policy, policy_path
from dataops.governance.users import (
    AuthenticationError,
    FailedTokens,
    SlowedDown,
    add_user,
    authenticate_os_user,
    authenticate_token,
    list_users,
    revoke_user,
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DATAOPS_USERS", raising=False)
    return Settings(tmp_path)


def test_an_expiry_must_lie_in_the_future(settings: Settings) -> None:
    for days in (0, -5):
        with pytest.raises(ValueError, match="at least 1"):
            add_user(settings, load_policy(), "leaver", "analyst", expires_days=days)
    token = add_user(settings, load_policy(), "stayer", "analyst", expires_days=1)
    assert authenticate_token(settings, token).name == "stayer"
    with pytest.raises(AuthenticationError, match="expired"):
        authenticate_token(settings, token, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))


def test_a_revoked_user_is_refused_at_once_and_stays_listed(settings: Settings) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    token = add_user(settings, load_policy(), "ana", "analyst", os_user=me)
    assert authenticate_os_user(settings).name == "ana"
    revoke_user(settings, "ana")
    for attempt in (lambda: authenticate_token(settings, token), lambda: authenticate_os_user(settings)):
        with pytest.raises(AuthenticationError, match="revoked"):
            attempt()
    assert "revoked_at" in list_users(settings)["ana"]
    with pytest.raises(KeyError):
        revoke_user(settings, "nobody_here")
    assert os.stat(settings.users_file).st_mode & 0o777 == 0o600


def test_the_os_account_is_the_real_uid_not_logname(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(settings, load_policy(), "the_cfo", "finance", os_user="cfo")
    monkeypatch.setenv("LOGNAME", "cfo")
    monkeypatch.setenv("USER", "cfo")
    with pytest.raises(AuthenticationError, match="is not mapped"):
        authenticate_os_user(settings)
    nobody = pwd.getpwnam("nobody")
    add_user(settings, load_policy(), "someone", "analyst", os_user="nobody")
    monkeypatch.setattr(os, "getuid", lambda: nobody.pw_uid)
    assert authenticate_os_user(settings).name == "someone"


def test_sudo_names_the_caller_only_for_the_platforms_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_UID", "12345")
    monkeypatch.setattr(os, "getuid", platform_uid)
    assert caller_uid() == 12345
    monkeypatch.setattr(os, "getuid", lambda: 999)  # anyone else's SUDO_UID is their own invention
    assert caller_uid() == 999


@pytest.mark.parametrize(
    "variable", ["DATAOPS_DATA_DIR", "DATAOPS_POLICY", "DATAOPS_USERS", "DATAOPS_PSEUDONYM_KEY_FILE"]
)
def test_the_settings_that_choose_the_platforms_files_are_the_platforms_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    for name in TRUSTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    assert trusted_env(variable) == str(tmp_path)
    monkeypatch.setattr(os, "getuid", lambda: platform_uid() + 1)
    with pytest.raises(UntrustedSetting, match=f"{variable} is honoured only"):
        trusted_env(variable)
    monkeypatch.delenv(variable)
    assert trusted_env(variable) is None  # unset, anyone gets the platform's defaults
    assert policy_path().name == "policy.yaml" and Settings.from_env().data_dir.name == "data"


def test_failed_tokens_slow_their_source_down(settings: Settings) -> None:
    limits = ServerLimits(free_failed_tokens=3, failed_token_window_seconds=600, max_failed_token_delay_seconds=60)
    failures = FailedTokens(settings, limits)
    for _ in range(3):
        failures.check("http:10.0.0.1")
        failures.failed("http:10.0.0.1")
    with pytest.raises(SlowedDown) as slowed:
        failures.check("http:10.0.0.1")
    assert 1 <= slowed.value.retry_after <= 3
    failures.check("http:10.0.0.2")  # another source is not slowed
    failures.failed("http:10.0.0.1")
    with pytest.raises(SlowedDown) as slower:
        failures.check("http:10.0.0.1")
    assert slower.value.retry_after > slowed.value.retry_after  # the delay doubles
    state = yaml.safe_load((settings.governance_dir / "failed_tokens.json").read_text())
    assert len(state["http:10.0.0.1"]) == 4
