"""The nothing-new check's project test (docs/decisions/0057): a file of the dbt project written since the last
build means "build", but the registry's generated seeds do not, since any process under another registry version
rewrites them in the folder every process shares."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from dataops.core.settings import Settings
from dataops.publish import unchanged
from dataops.publish.unchanged import Held, built_and_published

BUILT = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dbt project folder whose every file is older than the last build."""
    root = tmp_path / "transforms"
    for name in ("dbt_project.yml", "models/marts/fct_x.sql", "seeds/registry/registry_kpis.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
        os.utime(root / name, (BUILT.timestamp() - 60, BUILT.timestamp() - 60))
    monkeypatch.setattr(unchanged, "DBT_PROJECT_DIR", root)
    return root


def test_an_authored_file_written_since_the_build_starts_one_a_registry_seed_does_not(
    project: Path, tmp_path: Path
) -> None:
    settings = Settings(tmp_path / "data")
    held = Held(loaded={}, waiting=False, built_at=BUILT, published_at=BUILT + dt.timedelta(minutes=5))
    assert built_and_published(settings, held) is None
    later = BUILT.timestamp() + 3600
    os.utime(project / "seeds/registry/registry_kpis.csv", (later, later))  # another version's build, and back
    assert built_and_published(settings, held) is None
    os.utime(project / "models/marts/fct_x.sql", (later, later))
    assert built_and_published(settings, held) == "the dbt project changed since the last build (fct_x.sql)"
