"""The files guard what the gateway guards: the data directory is the platform account's alone but for the
analyst file and the data products; the keys that could link a pseudonym back are pseudonymised too; the
pseudonym key lives outside the data directory."""

from __future__ import annotations

import copy
import stat
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataops.core.settings import Settings, readable_by_others, secure_data_dir
from dataops.egress.exports import export_data_products
from dataops.governance.metadata import load_manifest, metadata_problems, published_datasets
from tests.governance.conftest import Governed

pytestmark = pytest.mark.xdist_group("built")


def test_only_the_analyst_file_and_the_data_products_are_readable_by_others(governed: Governed) -> None:
    settings = governed.settings
    secure_data_dir(settings)  # what every command and the code location do first
    export_data_products(settings)
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    shared = {p for p in files if readable_by_others(p, settings.data_dir)}
    products = {p for p in files if p.parent.parent == settings.exports_dir and not p.parent.name.startswith(".")}
    assert shared == {settings.analytics_db, settings.exports_dir / "index.json", *products}
    assert any(p.suffix == ".parquet" for p in products)
    for private in (settings.lake_dir, settings.sources_dir, settings.dbt_runs_dir, settings.governance_dir):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
    for private in (settings.build_db, settings.restricted_db, settings.users_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o711  # others may pass, not list
    assert stat.S_IMODE(settings.analytics_db.stat().st_mode) == 0o444


def test_a_room_made_readable_by_mistake_is_closed_again(governed: Governed) -> None:
    governed.settings.lake_dir.chmod(0o755)
    stray = governed.settings.warehouse_dir / "stray.duckdb"
    stray.write_bytes(b"")
    stray.chmod(0o644)
    secure_data_dir(governed.settings)
    assert stat.S_IMODE(governed.settings.lake_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(stray.stat().st_mode) == 0o600
    stray.unlink()


def test_lead_ids_are_pseudonymised_so_the_lake_reverses_no_pseudonym(governed: Governed) -> None:
    """The issue joined the analyst file's lead ids to the lake and reversed every pseudonym tried."""
    leads = governed.settings.lake_dir / "raw" / "crm" / "leads"
    files = sorted(leads.rglob("*.parquet"))  # every version's day files, whatever the lake's layout
    lake_ids = set(pl.concat([pl.read_parquet(f, columns=["Id"]) for f in files])["Id"].cast(pl.Utf8))
    assert lake_ids
    with duckdb.connect(str(governed.settings.analytics_db), read_only=True) as conn:
        published = {i for (i,) in conn.execute("select lead_id from marts.fct_leads").fetchall()}
        shown = conn.execute(
            "select published_as from catalog.columns where dataset = 'marts.fct_leads' and column_name = 'lead_id'"
        ).fetchone()
    with duckdb.connect(str(governed.settings.restricted_db), read_only=True) as conn:
        clear = {i for (i,) in conn.execute("select lead_id from marts.fct_leads").fetchall()}
    assert published and all(i.startswith("psd_") for i in published) and not published & lake_ids
    assert clear and clear <= lake_ids  # in clear only in the restricted file, for the roles granted
    assert shown is not None and "pseudonymised" in shown[0]


def test_a_key_of_rows_with_personal_data_must_be_pseudonymised_too() -> None:
    manifest = copy.deepcopy(load_manifest())
    node = next(n for n in manifest["nodes"].values() if n.get("unique_id") == "model.dataops.fct_leads")
    node["columns"]["lead_id"]["tags"] = []
    node["columns"]["lead_id"]["config"]["tags"] = []
    problems = metadata_problems(published_datasets(manifest))
    assert "marts.fct_leads: missing pii tag on key column lead_id" in " ".join(problems)


def test_the_pseudonym_key_is_outside_the_data_directory(governed: Governed) -> None:
    key = governed.settings.pseudonym_key_file
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not key.is_relative_to(governed.settings.data_dir)
    assert not list(governed.settings.data_dir.rglob("*.key"))


def test_readable_by_others_follows_every_folder(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    file = tmp_path / "a" / "b" / "f"
    file.write_text("x")
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        folder.chmod(0o755)
    file.chmod(0o644)
    assert readable_by_others(file, tmp_path)
    (tmp_path / "a").chmod(0o700)
    assert not readable_by_others(file, tmp_path)
    (tmp_path / "a").chmod(0o711)
    file.chmod(0o600)
    assert not readable_by_others(file, tmp_path)


def test_securing_the_data_directory_leaves_a_publish_in_flight_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run's process secures the data directory as it loads, while another run may be publishing: the
    copy aside, already readable, keeps its mode, and a temporary file that vanishes meanwhile is no error."""
    settings = Settings(tmp_path / "data")
    settings.warehouse_dir.mkdir(parents=True)
    aside = settings.warehouse_dir / ".analytics-0123456789abcdef.duckdb"
    aside.write_bytes(b"")
    aside.chmod(0o444)
    listing = Path.iterdir

    def with_a_ghost(self: Path) -> Iterator[Path]:
        yield from listing(self)
        yield self / "build.duckdb.wal"  # listed, then removed by its run before it could be closed

    monkeypatch.setattr(Path, "iterdir", with_a_ghost)
    secure_data_dir(settings)
    assert stat.S_IMODE(aside.stat().st_mode) == 0o444
