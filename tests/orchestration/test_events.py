"""What Dagster records follows the runs and the assets, not the days (docs/decisions/0035): a range's build
writes the events of a one-day build, besides one landed and one published day each."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from dataops.core.settings import Settings
from orchestration.lib.names import EXTRACTS_KEY, PUBLISHED_DAYS_KEY
from tests.orchestration.conftest import LONG, SHORT, Ranged, range_events

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("events")]


def test_a_range_writes_the_events_of_a_day_besides_one_per_landed_and_published_day(
    first_days: Ranged, tmp_path: Path
) -> None:
    # three days (the shared range, counted as it was built) against ten from scratch in a new data directory:
    # anything that grew with the days would differ (ten days cross a week's end)
    short_kinds, short_assets = first_days.kinds, first_days.assets
    shutil.copytree(first_days.sources, Settings(tmp_path / "long").sources_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        long_kinds, long_assets = range_events(tmp_path / "long", LONG, instance)

    per_day = {EXTRACTS_KEY.to_user_string(), PUBLISHED_DAYS_KEY.to_user_string()}
    assert {k: short_assets[k] for k in per_day} == dict.fromkeys(per_day, SHORT)
    assert {k: long_assets[k] for k in per_day} == dict.fromkeys(per_day, LONG)
    # every other asset: one materialisation per run, whatever the days
    assert {k: n for k, n in long_assets.items() if k not in per_day} == {
        k: n for k, n in short_assets.items() if k not in per_day
    }
    assert all(n == 1 for k, n in long_assets.items() if k not in per_day)
    long_kinds["ASSET_MATERIALIZATION"] -= 2 * (LONG - SHORT)
    assert long_kinds == short_kinds  # and nothing else grows with the days: planning, checks, outputs
