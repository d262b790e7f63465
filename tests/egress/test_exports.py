"""Data products: manifests that match their files, versions that move only when the content does, and only
the files of the months that changed written again."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import duckdb
import pytest

from dataops.egress.exports import export_data_products, exports_dir, product_files, read_manifest
from tests.publish.kept_digests import tamper
from tests.published import Published, copy_of

pytestmark = pytest.mark.xdist_group("published")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every data product file and folder (the exporter's own .staging scratch folder aside)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if not p.relative_to(folder).parts[0].startswith(".")
    }


def test_manifests_match_their_files_and_an_unchanged_reexport_changes_nothing(
    published: Published, tmp_path: Path
) -> None:
    world = copy_of(published, tmp_path / "data")
    settings = world.settings

    first = export_data_products(settings)

    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        tables = {
            f"{schema}.{table}"
            for schema, table in conn.execute(
                "select schema_name, table_name from duckdb_tables() where schema_name in ('marts', 'kpis')"
            ).fetchall()
        }
        assert set(first.datasets) == tables and sorted(first.changed) == sorted(tables)
        assert "marts.fct_gl_entries" not in tables  # restricted: never in the general file, nor exported
        for dataset in tables:
            manifest = read_manifest(settings, dataset)
            assert manifest is not None and manifest["dataset"] == dataset and manifest["version"] == 1
            files = product_files(settings, dataset)
            for part, file in zip(manifest["files"], files, strict=True):
                assert part["checksum"] == "sha256:" + hashlib.sha256(file.read_bytes()).hexdigest()
                assert part["bytes"] == file.stat().st_size
                in_file = conn.execute(f"select count(*) from read_parquet('{file}')").fetchall()[0][0]
                assert part["row_count"] == in_file, file
            assert manifest["bytes"] == sum(file.stat().st_size for file in files)
            listed = ", ".join(f"'{file}'" for file in files)  # together, the files are the table
            difference = f"(select * from read_parquet([{listed}]) except all select * from {dataset}) union all "
            difference += f"(select * from {dataset} except all select * from read_parquet([{listed}]))"
            assert conn.execute(f"select count(*) from ({difference})").fetchall() == [(0,)], dataset
            in_warehouse = conn.execute(f"select count(*) from {dataset}").fetchall()[0][0]
            assert manifest["row_count"] == in_warehouse, dataset
            assert [c["name"] for c in manifest["schema"]] == [
                r[0] for r in conn.execute(f"describe {dataset}").fetchall()
            ]
            assert manifest["publish_id"] == first.publish_id and manifest["published_at"]
    index = json.loads((exports_dir(settings) / "index.json").read_text())
    assert index["publish_id"] == first.publish_id and index["datasets"] == first.datasets

    before = snapshot(exports_dir(settings))
    again = export_data_products(settings, force=True)  # read and written again, whole

    assert not again.already_exported and again.changed == [] and again.datasets == first.datasets
    assert snapshot(exports_dir(settings)) == before  # not a byte, not a timestamp


def test_a_publish_exported_whole_is_not_read_again_unless_a_file_is_missing(
    published: Published, tmp_path: Path
) -> None:
    world = copy_of(published, tmp_path / "data")
    settings = world.settings
    first = export_data_products(settings)
    before = snapshot(exports_dir(settings))

    again = export_data_products(settings)

    assert again.already_exported and again.publish_id == first.publish_id
    assert again.datasets == first.datasets and again.rows == first.rows and again.changed == []
    assert snapshot(exports_dir(settings)) == before

    lost = read_manifest(settings, "kpis.kpi_daily")
    assert lost is not None
    (exports_dir(settings) / "kpis.kpi_daily" / lost["files"][0]["file"]).unlink()
    repaired = export_data_products(settings)

    assert not repaired.already_exported and repaired.changed == ["kpis.kpi_daily"]
    current = read_manifest(settings, "kpis.kpi_daily")
    assert current is not None and current["version"] == lost["version"] + 1
    assert [f["checksum"] for f in current["files"]] == [f["checksum"] for f in lost["files"]]
    assert all(file.exists() for file in product_files(settings, "kpis.kpi_daily"))


def test_a_changed_dataset_gets_a_new_version_and_the_rest_stay(published: Published, tmp_path: Path) -> None:
    world = copy_of(published, tmp_path / "data")
    settings = world.settings
    export_data_products(settings)
    old = read_manifest(settings, "kpis.kpi_daily")
    assert old is not None
    os.chmod(settings.analytics_db, stat.S_IRUSR | stat.S_IWUSR)  # stand in for a new publish
    with duckdb.connect(str(settings.analytics_db)) as conn:
        conn.execute("delete from kpis.kpi_daily where date_day = (select max(date_day) from kpis.kpi_daily)")
        conn.execute("insert into publish.publish_log (publish_id, published_at) values ('stand-in', now())")

    report = export_data_products(settings)

    assert report.changed == ["kpis.kpi_daily"]
    new = read_manifest(settings, "kpis.kpi_daily")
    assert new is not None and new["version"] == 2 and new["row_count"] < old["row_count"]
    assert new["partitioned_by"] == "date_day" and len(old["files"]) > 1
    # only the last day's month is written again; the other months keep their files (decision 0071)
    assert [f["file"] for f in new["files"][:-1]] == [f["file"] for f in old["files"][:-1]]
    assert new["files"][-1]["file"] != old["files"][-1]["file"] and new["files"][-1]["file"].startswith("v0002-")
    assert all((exports_dir(settings) / "kpis.kpi_daily" / f["file"]).exists() for f in old["files"])  # mid-read
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        listed = ", ".join(f"'{file}'" for file in product_files(settings, "kpis.kpi_daily"))
        assert (
            conn.execute(f"select * from read_parquet([{listed}]) order by all").fetchall()
            == conn.execute("select * from kpis.kpi_daily order by all").fetchall()
        )
    assert json.loads((exports_dir(settings) / "index.json").read_text())["datasets"]["kpis.kpi_daily"] == 2


def test_the_data_products_read_the_digests_the_publish_kept_while_they_describe_the_file(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analyst file keeps its tables' month digests (decision 0078): the data products hash no table whose
    kept digests still describe it. A table changed in place under kept digests of another DuckDB version is
    hashed, and the month that changed is written again."""
    import dataops.egress.exports

    world = copy_of(published, tmp_path / "data")
    settings = world.settings
    hashed: list[str] = []
    spy = dataops.egress.exports.digests
    monkeypatch.setattr(
        dataops.egress.exports, "digests", lambda conn, rows, *a: hashed.append(rows) or spy(conn, rows, *a)
    )

    first = export_data_products(settings)

    assert first.changed and hashed == []
    old = read_manifest(settings, "kpis.kpi_daily")
    assert old is not None and len(old["files"]) > 1
    tamper(
        settings.analytics_db,
        [  # the row count kept: only the version tells these digests from the table's
            "update kpis.kpi_daily set value = value + 1 where date_day = (select max(date_day) from kpis.kpi_daily)",
            "update pipeline.month_digests set engine = '0.0' where dataset = 'kpis.kpi_daily'",
            "insert into publish.publish_log (publish_id, published_at) values ('stand-in', now())",
        ],
    )

    report = export_data_products(settings)

    assert hashed == ["kpis.kpi_daily"] and report.changed == ["kpis.kpi_daily"]
    new = read_manifest(settings, "kpis.kpi_daily")
    assert new is not None and [f["file"] for f in new["files"][:-1]] == [f["file"] for f in old["files"][:-1]]
    assert new["files"][-1]["file"] != old["files"][-1]["file"]
    with duckdb.connect(str(settings.analytics_db), read_only=True) as conn:
        listed = ", ".join(f"'{file}'" for file in product_files(settings, "kpis.kpi_daily"))
        assert (
            conn.execute(f"select * from read_parquet([{listed}]) order by all").fetchall()
            == conn.execute("select * from kpis.kpi_daily order by all").fetchall()
        )
