"""The quality rules read the registry: change a state, a transition or a currency there, and the gate follows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from registry import ENTERPRISE_FILE

READ_CONSUMERS = """
import json
from quality.contracts.base import CURRENCIES
from quality.marts import STATES, TRANSITIONS
print(json.dumps({"states": STATES, "transitions": sorted(map(list, TRANSITIONS)), "currencies": CURRENCIES}))
"""


def consumers(registry: Path | None) -> dict[str, list[object]]:
    """What the quality rules hold, read in a fresh interpreter (they read the registry when they load)."""
    env = {**os.environ, "DATAOPS_REGISTRY": str(registry)} if registry else dict(os.environ)
    done = subprocess.run([sys.executable, "-c", READ_CONSUMERS], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def test_states_their_transitions_and_the_currencies_follow_the_registry(tmp_path: Path) -> None:
    data = yaml.safe_load(ENTERPRISE_FILE.read_text())
    states = data["customer_states"]
    states.insert(1, {"name": "dormant", "rule": "live but unused", "when": "live_contracts > 5", "entered_from": []})
    states[0]["entered_from"].append("dormant")
    data["money"]["currencies"].append("JPY")
    changed = tmp_path / "enterprise.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))

    before, after = consumers(None), consumers(changed)
    assert after["states"] == [s["name"] for s in states] and "dormant" not in before["states"]
    transitions = {*map(tuple, before["transitions"]), ("dormant", "active")}
    assert sorted(map(tuple, after["transitions"])) == sorted(transitions)
    assert after["currencies"] == [*before["currencies"], "JPY"]
