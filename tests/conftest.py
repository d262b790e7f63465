"""Shared fixtures: small simulations are built once per session and shared read-only."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dataops.core.collector import collect_less_often
from dataops.core.settings import Settings
from source_systems.simulator.config import DirtRates, SimConfig
from source_systems.simulator.run import simulate

if TYPE_CHECKING:
    from tests.published import LateRun, Published


# A RAM disk for the suite's temporary folders, where the machine has one with room (docs/decisions/0106).
RAM_DISK = Path("/dev/shm")
RAM_DISK_ROOM = 8 * 2**30  # the whole suite's folders come to about 5 GiB


def pytest_configure(config: pytest.Config) -> None:
    """Each test process (each xdist worker) collects reference cycles as the platform's processes do: the
    pipelines, dbt commands and runs the tests start in process pay what a `dataops` command pays."""
    collect_less_often()
    if not hasattr(config, "workerinput"):  # the process that starts the workers: they inherit its TMPDIR
        temporary_files_in_memory(config)


def temporary_files_in_memory(config: pytest.Config) -> None:
    """The tests' data directories, Dagster instances and warehouses in memory rather than on the disk.

    Nothing a test checks depends on the disk: a killed process leaves its writes in the page cache either way.
    What the disk adds is the kernel's work for every write, sync and delete (an online-discard disk trims each
    deleted file), CPU the two cores' suite cannot spare (measured in decision 0106). Where the caller chose the
    place (``--basetemp``, ``TMPDIR``, ``PYTEST_DEBUG_TEMPROOT``), or no RAM disk with room and exec rights is
    there, nothing changes. The children (dbt, Dagster's runs, the servers) inherit ``TMPDIR``.
    """
    if config.option.basetemp or os.environ.get("TMPDIR") or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    try:
        usable = os.access(RAM_DISK, os.W_OK) and not os.statvfs(RAM_DISK).f_flag & os.ST_NOEXEC
        roomy = shutil.disk_usage(RAM_DISK).free >= RAM_DISK_ROOM
    except OSError:
        return
    if usable and roomy:
        os.environ["TMPDIR"] = str(RAM_DISK)
        tempfile.tempdir = None  # read again from TMPDIR, by pytest's temporary folders among others


@pytest.fixture(scope="session", autouse=True)
def pseudonym_key_outside_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The pseudonym key lives outside every data directory (the platform account's config folder by
    default): tests keep theirs in the session's temporary folder, not in the home of whoever runs them."""
    from dataops.core.settings import environ

    with environ({"DATAOPS_PSEUDONYM_KEY_FILE": str(tmp_path_factory.mktemp("keys") / "pseudonym.key")}):
        yield


@pytest.fixture(scope="session", autouse=True)
def dbt_forked_from_one_server() -> None:
    """A test process runs dozens of builds in process, each with its own ``dataops-dbt``: here they are forked
    from one server that imported dbt once (docs/decisions/0107). The command-line processes the tests start
    (``dataops run``) start theirs as the platform does, so the suite runs both ways."""
    from dataops.transform import dbt_server

    dbt_server.enable()


TINY_START = dt.date(2025, 1, 1)
TINY_DAYS = 80


@pytest.fixture(scope="session")
def tiny_config() -> SimConfig:
    # Rates raised so that a tiny simulation still shows every kind of defect in every table.
    rates = DirtRates(duplicate=0.05, held_back_payment=0.1, orphan_fk=0.02, null_required=0.02, bad_amount=0.02)
    return SimConfig(seed=7, scale=0.05, start=TINY_START, dirt=rates)


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory, tiny_config: SimConfig) -> Path:
    """80 simulated days at a tiny scale; long enough for every scripted transition (do not modify)."""
    root = tmp_path_factory.mktemp("tiny") / "sources"
    simulate(root, TINY_START + dt.timedelta(days=TINY_DAYS - 1), tiny_config)
    return root


BUILT_START = dt.date(2025, 1, 1)
BUILT_DAYS = 150


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 simulated days at a small scale, ingested and transformed by one Dagster run (do not modify).

    Tests using it carry ``pytest.mark.xdist_group("built")`` so that one worker builds it once.
    """
    from tests.pipeline import run_job

    root = tmp_path_factory.mktemp("built")
    end = BUILT_START + dt.timedelta(days=BUILT_DAYS - 1)
    # the pipeline reads no product events yet: the simulator skips them (the business is the same either way)
    simulate(Settings(root).sources_dir, end, SimConfig(seed=21, scale=0.08, start=BUILT_START, product_events=False))
    result = run_job(root, BUILT_START, end)
    assert result.success
    return root


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """Published through the day before a late journal line for a closed month (tests/published.py).

    Shared by the publishing and egress tests, which carry ``pytest.mark.xdist_group("published")``.
    """
    from tests.published import build_published

    return build_published(tmp_path_factory)


@pytest.fixture(scope="session")
def late_run(published: Published, tmp_path_factory: pytest.TempPathFactory) -> LateRun:
    """``published`` one day on, run once with an analyst's reader holding the file: a late journal line
    restates January (tests/published.py). Shared read-only by the publishing and dashboard tests."""
    from tests.published import run_late_day

    return run_late_day(published, tmp_path_factory.mktemp("late-run"))


# The xdist groups whose work is longest, longest first (measured: docs/testing.md, "The cost budget"). CI runs
# `-n 2 --dist loadgroup --no-loadscope-reorder`: a worker that runs dry takes the next group in collection
# order, so a long group that starts late sets the suite's wall time while the other worker idles. Starting
# the longest first (longest-processing-time-first) lets the short ones fill in around them. A group missing
# here only starts later; a renamed one must be renamed here too.
LONGEST_GROUPS_FIRST = (
    "spark",
    "recovery",
    "dagster_services",
    "built",
    "published",
    "tiny",
    "postgres",
    "events",
    "bench",
    "incremental",
    "brakes",
    "usage_published",
)

# Before them, the definition-change tests beside groups that run no dbt. They build under other registry
# versions, and the registry's seeds are files of the one dbt project every invocation shares: a build under
# another version waits until those under the current one end, and they wait for it (`registry_seeds`,
# dataops/transform/project.py). Side by side with another group's builds, each worker waited for the other's:
# 56 s of the publishing tests' 186 s (docs/testing.md, "Stop 40"). xdist deals the first group to one worker,
# the second to the other, and the third to the first at once (two tests left count as nearly done), the
# fourth to whichever worker nearly finishes first: `definitions` then `spark` on one worker; `ingest`, then
# `signal`, on the other while the definitions build (neither runs dbt).
GROUP_ORDER = ("definitions", "ingest", LONGEST_GROUPS_FIRST[0], "signal", *LONGEST_GROUPS_FIRST[1:])


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))


def longest_first(scopes: list[str]) -> list[int]:
    """The positions of the items, whose xdist scopes (group, or node id if none) are given in pytest's order,
    reordered: the groups of ``GROUP_ORDER`` in its order, then the other scopes by their number of tests (what
    xdist's own reordering would do), ties and the items of a scope in pytest's order."""
    sizes: dict[str, int] = {}
    for scope in scopes:
        sizes[scope] = sizes.get(scope, 0) + 1
    rank = {name: position for position, name in enumerate(GROUP_ORDER)}
    return sorted(range(len(scopes)), key=lambda i: (rank.get(scopes[i], len(rank)), -sizes[scopes[i]]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, order the collection by ``GROUP_ORDER`` (``longest_first``). Both workers collect the
    same items and order them the same way, as xdist requires; a run without xdist keeps pytest's order."""
    if not hasattr(config, "workerinput"):
        return
    order = longest_first([_group(item) or item.nodeid for item in items])
    items[:] = [items[i] for i in order]
