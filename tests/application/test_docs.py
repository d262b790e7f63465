"""`dataops docs serve`: the dbt documentation with the project's overview page, generated for a data directory
and served on loopback, in Chromium; generated without the warehouse's catalog while a run holds the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from application.docs_site import docs_site
from dataops.core.settings import Settings
from dataops.transform import docs
from dataops.transform.docs import generate_docs
from dataops.transform.runner import run_dbt
from tests.local import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("built")]

DATAOPS = Path(sys.executable).with_name("dataops")


@pytest.fixture(scope="module")
def documented(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(built, root, dirs_exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [str(DATAOPS), "docs", "serve", "--port", str(port)],
        env={**os.environ, "DATAOPS_DATA_DIR": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # dbt parses and compiles the project first
    while True:
        try:
            if httpx.get(f"{url}/", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"`dataops docs serve` did not start: {process.communicate()[0][-3000:]}")
        time.sleep(0.5)
    try:
        yield url, Settings(root)
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_docs_open_on_the_project_overview_with_every_model_and_its_catalog(
    documented: tuple[str, Settings],
) -> None:
    from playwright.sync_api import sync_playwright

    url, settings = documented
    manifest = httpx.get(f"{url}/manifest.json", timeout=30).json()
    overview = manifest["docs"]["doc.dataops.__overview__"]["block_contents"]
    assert overview.startswith("# The enterprise model") and "flash" in overview
    catalog = httpx.get(f"{url}/catalog.json", timeout=30).json()
    kpi_daily = catalog["nodes"]["model.dataops.kpi_daily"]
    assert set(kpi_daily["columns"]) >= {"date_day", "kpi_name", "value"}
    with duckdb.connect(str(settings.build_db), read_only=True) as conn:
        types = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'kpis' and table_name = 'kpi_daily'"
            ).fetchall()
        )
    assert {c: v["type"] for c, v in kpi_daily["columns"].items()} == types  # read from this data directory

    for name in ("run_results.json", "partial_parse.msgpack", "../warehouse/build.duckdb", "perf_info.json"):
        assert httpx.get(f"{url}/{name}", timeout=10).status_code == 404, name

    elsewhere: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: None if r.url.startswith(url) else elsewhere.append(r.url))
        page.goto(f"{url}/")
        page.wait_for_selector("h1:has-text('The enterprise model')", timeout=60_000)
        assert page.locator("text=Where the definitions come from").count() == 1
        browser.close()
    assert elsewhere == []


def test_the_docs_are_served_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        docs_site(tmp_path, "0.0.0.0", 0)
    server = docs_site(tmp_path, "127.0.0.1", 0)
    server.start()
    try:
        assert httpx.get(server.url, timeout=10).status_code == 503  # nothing generated yet
        (tmp_path / "index.html").write_text("<p>docs</p>")
        response = httpx.get(server.url, timeout=10)
        assert response.text == "<p>docs</p>" and "connect-src 'self'" in response.headers["content-security-policy"]
    finally:
        server.stop()


@contextmanager
def held_by_another_process(path: Path) -> Iterator[None]:
    """A writer in another process holds the file, as a run does (DuckDB's lock is per process)."""
    code = f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        try:
            holder.communicate(timeout=20)  # its stdin closed: it lets the file go and ends
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.communicate()


def test_while_a_run_holds_the_warehouse_the_docs_are_generated_without_its_catalog(
    documented: tuple[str, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, settings = documented
    # of the three dbt commands, the generate the lock refuses runs in its own process as the platform runs it (the
    # fallback reads the refusal from that process's output); the parse and the generate without the catalog run
    # in this process: dbt's start-up paid once for them, the fallback under test the same
    commands: list[object] = []

    def first_in_its_own_process(*args: Any, **kwargs: Any) -> Any:
        commands.append(args)
        return run_dbt(*args, **kwargs, in_process=len(commands) > 1)

    monkeypatch.setattr(docs, "run_dbt", first_in_its_own_process)
    with held_by_another_process(settings.build_db):
        site = generate_docs(settings)
    assert not site.with_catalog and len(commands) == 3  # refused by the lock, a parse, generated without it
    manifest = json.loads((site.folder / "manifest.json").read_text())
    assert "doc.dataops.__overview__" in manifest["docs"] and "model.dataops.kpi_daily" in manifest["nodes"]
    assert json.loads((site.folder / "catalog.json").read_text())["nodes"] == {}
