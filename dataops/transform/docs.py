"""The dbt project's documentation site: every model, column, test and the lineage, with a project overview
(transforms/docs/overview.md), generated for one data directory and read in a browser (`dataops docs serve`).

The site is generated into the data directory, not the project's ``target/``, so that generating it never
disturbs a run's artefacts. Its catalog (column types, row counts) is read from the build warehouse; while a
run holds that file, the site is generated without it and says so.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from dataops.core.settings import DBT_PROJECT_DIR, Settings
from dataops.transform.runner import PARTIAL_PARSE, parse_to_start_from, run_dbt
from registry.loader import Registry, load_registry

# What the site is made of: the page, and the two files it loads.
SITE_FILES = ("index.html", "manifest.json", "catalog.json")


class DocsError(RuntimeError):
    """dbt could not generate the documentation."""


@dataclass(frozen=True)
class Site:
    folder: Path
    with_catalog: bool  # False: the build warehouse was busy (a run held it), so no column types or row counts


def docs_dir(settings: Settings) -> Path:
    return settings.data_dir / "dbt_docs"


def generate_docs(settings: Settings, registry: Registry | None = None) -> Site:
    """``dbt docs generate`` for this data directory; without the warehouse's catalog if a run holds it."""
    folder = docs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    # the definitions the caller names (the data directory's adopted ones, as its runs build them); the site's
    # parse starts from the last one made under them, as a run's does (dbt checks it first)
    registry = registry or load_registry()
    start = parse_to_start_from(settings, DBT_PROJECT_DIR, registry)
    if start is not None:
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile by another command: a whole parse
            shutil.copyfile(start, folder / PARTIAL_PARSE)
    target = ["--target-path", str(folder)]
    result = run_dbt(["docs", "generate", *target], settings, registry)
    if result.success:
        return Site(folder, with_catalog=True)
    if "lock" in result.output.lower():
        # A run is writing the build warehouse. Parsing needs no database, and the site without compiling
        # nor reading the warehouse still has every description, test, owner and the lineage.
        result = run_dbt(["parse", *target], settings, registry)
        if result.success:
            result = run_dbt(["docs", "generate", *target, "--empty-catalog", "--no-compile"], settings, registry)
            if result.success:
                return Site(folder, with_catalog=False)
    raise DocsError(f"dbt docs generate failed:\n{result.output[-3000:]}")
