"""The limits and failures no attack reaches easily: the server-wide concurrency cap, and a gateway that fails
unexpectedly (still one audit line, a 500 that says nothing of the failure)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from application.api import create_app
from dataops.core.settings import Settings
from dataops.governance import audit
from dataops.governance.analysis import Denied
from dataops.governance.gateway import Gateway
from dataops.governance.policy import load_policy
from dataops.governance.slots import hold
from dataops.governance.users import add_user


def test_the_server_cap_refuses_another_users_query_while_its_slots_are_held(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    with hold(settings, "ana", per_user=2, per_server=1, queue_seconds=0):
        with pytest.raises(Denied) as refused, hold(settings, "bob", per_user=2, per_server=1, queue_seconds=0.2):
            pass
        assert refused.value.brake == "concurrency_server"
        with pytest.raises(Denied) as mine, hold(settings, "ana", per_user=1, per_server=4, queue_seconds=0):
            pass  # the user's own cap is checked first
        assert mine.value.brake == "concurrency_user"
    with hold(settings, "bob", per_user=2, per_server=1, queue_seconds=0):
        pass  # the slot came back with the block's end


def test_a_gateway_failure_answers_500_with_one_audit_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, policy = Settings(tmp_path), load_policy()
    token = add_user(settings, policy, "ana", "analyst")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail that must not reach the client")

    monkeypatch.setattr(Gateway, "run", broken)

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings, policy), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await client.post("/v1/query", json={"sql": "select 1"}, headers=headers)

    response = anyio.run(ask)
    assert response.status_code == 500 and "internal detail" not in response.text
    records = audit.read(settings)
    assert len(records) == 1, records
    assert records[0]["http_status"] == 500 and records[0]["outcome"] == "error" and records[0]["user"] == "ana"
