"""What the egress assets share: after every publish, and reading only the published analyst warehouse, so
they hold no pool and never wait for, or block, a writer."""

from __future__ import annotations

from typing import Any

from orchestration.lib.names import ANALYTICS_KEY, PLATFORM_OWNER


def egress_asset_args() -> dict[str, Any]:
    return {"group_name": "egress", "owners": [PLATFORM_OWNER], "deps": [ANALYTICS_KEY], "tags": {"layer": "egress"}}
