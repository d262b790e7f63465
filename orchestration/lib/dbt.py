"""The dbt project in Dagster: its manifest prepared with the registry's seeds, its nodes as assets and checks,
and a dbt run's structured log turned into their materialisations and check results as dbt writes it.

dbt runs through the library's runner (the same command ``dataops dbt`` runs) rather than through
``DbtCliResource``: that resource asks the dbt executable for its version (a network check for updates) and
builds an adapter handle on every invocation, seconds of every run that no public option turns off, and this
project needs neither (docs/decisions/0032).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject, DbtProjectPreparer

from dataops.core.settings import DBT_PROJECT_DIR
from dataops.core.warehouse import Limits, connect, table_row_counts
from dataops.governance.metadata import PUBLISHED_SCHEMAS, load_manifest
from dataops.governance.policy import Policy, load_policy
from dataops.transform.runner import prepare_manifest
from orchestration.lib.names import PLATFORM_OWNER
from registry.loader import DomainNote, domain_notes, domain_owners

LAYERS = ("staging", "intermediate", "marts", "kpis")
DECLARED = ("classification", "domain", "grain", "refresh_schedule", "retention_days")


class RegistryPreparer(DbtProjectPreparer):
    """Writes the registry's seeds, then parses the project when the manifest is older than its files.

    Unlike dagster-dbt's default preparer it prepares on every load, not only under ``dagster dev``: the
    registry is data that changes without a deployment, and a fresh manifest costs one file comparison. (The
    default preparer's ``dbt parse`` would fail here: the models read seeds generated from the registry.)
    """

    def prepare_if_dev(self, project: DbtProject) -> None:
        self.prepare(project)

    def prepare(self, project: DbtProject) -> None:
        prepare_manifest(project_dir=Path(project.project_dir))


def dbt_project() -> DbtProject:
    """The dbt project, prepared: registry seeds written and the manifest current."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    RegistryPreparer().prepare_if_dev(project)
    return project


def translator() -> EnterpriseModelTranslator:
    return EnterpriseModelTranslator(load_policy(), domain_notes(), domain_owners())


# what publishing waits for, kept for the newest manifest file: (path, inode, mtime, size) -> keys
_PUBLISHED_KEYS: dict[tuple[str, int, int, int], tuple[dg.AssetKey, ...]] = {}


def published_model_keys(project: DbtProject | None = None) -> list[dg.AssetKey]:
    """The assets of the models analysts get (schemas marts and kpis): what publishing waits for.

    Kept per version of the manifest file: the gate and publishing each ask while the definitions load, a code
    server loads them again and again, and the answer takes reading the whole manifest.
    """
    project = project or dbt_project()
    path = Path(project.manifest_path)
    found = path.stat()
    version = (str(path), found.st_ino, found.st_mtime_ns, found.st_size)
    if version not in _PUBLISHED_KEYS:
        manifest = load_manifest(path)  # read again if caught half written by a dbt command
        models = translator()  # one for all: building one reads the policy and every domain's notes
        keys = [
            models.get_asset_spec(manifest, uid, project).key
            for uid, node in manifest["nodes"].items()
            if node["resource_type"] == "model" and node["config"].get("schema") in PUBLISHED_SCHEMAS
        ]
        _PUBLISHED_KEYS.clear()  # the newest manifest's only
        _PUBLISHED_KEYS[version] = tuple(sorted(keys, key=lambda k: k.to_user_string()))
    return list(_PUBLISHED_KEYS[version])


def _meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**props.get("meta", {}), **props.get("config", {}).get("meta", {})}


class EnterpriseModelTranslator(DagsterDbtTranslator):
    """Groups by layer; owners are the registry's owner of each model's domain; the metadata protocol and the
    policy's readers on each asset; descriptions as written (Markdown), without doc() references."""

    def __init__(self, policy: Policy, notes: dict[str, list[DomainNote]], owners: Mapping[str, str]) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True))
        self.policy, self.notes, self.owners = policy, notes, owners

    def get_asset_check_spec(
        self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetCheckSpec | None:
        """Every dbt test of a model reports into the model's one ``dbt_tests`` check (docs/decisions/0035)."""
        return dg.AssetCheckSpec(
            DBT_TESTS,
            asset=asset_spec.key,
            description="The dbt data tests of this model (keys, relationships, accepted values, the registry's "
            "rules): passed when every one passed; the metadata lists each test and its failing rows.",
        )

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn", [])
        return next((part for part in fqn if part in LAYERS), "transform")

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        domain = _meta(dbt_resource_props).get("domain")
        owner = self.owners.get(str(domain)) if domain else None
        return [f"team:{owner}"] if owner else [PLATFORM_OWNER]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        text = dbt_resource_props.get("description") or dbt_resource_props["name"]
        return str(text).split("{{")[0].strip()  # Markdown kept whole; a doc() block is dbt's, not the UI's

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        meta = _meta(dbt_resource_props)
        return {k: str(meta[k]) for k in ("classification", "domain") if meta.get(k)}

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """The metadata protocol on the asset: what the dataset declares, and who may read it (the policy)."""
        meta = _meta(dbt_resource_props)
        out = dict(super().get_metadata(dbt_resource_props))
        out |= {
            k: meta[k] for k in ("classification", "domain", "grain", "refresh_schedule", "retention_days") if k in meta
        }
        out |= {k: ", ".join(meta[k]) for k in ("key", "sort_order") if k in meta}
        columns = dbt_resource_props.get("columns", {}).values()
        pii = [
            c["name"] for c in columns if "pii" in {*(c.get("tags") or []), *(c.get("config", {}).get("tags") or [])}
        ]
        dataset = f"{dbt_resource_props.get('schema')}.{dbt_resource_props['name']}"
        if pii:
            out["pii_columns"] = dg.MetadataValue.json(pii)
            out["clear_personal_data_roles"] = dg.MetadataValue.json(self.policy.clear_personal_data_readers(dataset))
        if meta.get("classification"):
            out["access_roles"] = dg.MetadataValue.json(self.policy.readers(dataset, meta["classification"]))
        notes = " ".join(n.notes for n in self.notes.get(dataset, []) if n.notes)
        if notes:
            out["domain_notes"] = dg.MetadataValue.md(notes)
        return out


RESULT_EVENTS = ("LogModelResult", "LogSeedResult", "LogSnapshotResult", "LogTestResult")
DBT_TESTS = "dbt_tests"  # the one check per model that sums up its dbt tests
# what transforms/macros/row_count.sql logs for each table dbt built ("<schema>.<table>: <n> rows")
ROW_COUNT_LINE = re.compile(r"^\S+: (\d+) rows$")
SEED_LOADED = re.compile(r"^(?:CREATE|INSERT) (\d+)$")  # a seed's result: the whole table's rows, loaded


@dataclass
class TestOutcome:
    """One dbt test's result, waiting to be summed up in its model's check."""

    name: str
    status: str
    failures: int


@dataclass
class BuildEvents:
    """A dbt build's structured log, read line by line as dbt writes it, turned into Dagster's events: each
    model's or seed's materialisation as soon as its result line arrives, with its row count, and each model's
    check as soon as the last of its tests has reported (docs/decisions/0080).

    The row count is the line dbt logged for the node just before its result (the project's post-hook,
    transforms/macros/row_count.sql): while dbt writes the warehouse no other process may open it, so dbt
    counts. A seed's count is in its result's message. ``selected`` are the checks the step reports.
    """

    manifest: Mapping[str, Any]
    translator: DagsterDbtTranslator
    project: DbtProject
    selected: set[dg.AssetCheckKey]
    counts: dict[str, int] = field(default_factory=dict)  # unique_id: rows, until its result line
    outcomes: dict[str, list[TestOutcome]] = field(default_factory=dict)  # by the tested node's unique_id
    expected: dict[str, int] = field(init=False)  # the tests attached to each node

    def __post_init__(self) -> None:
        attached = (_attached(node) for node in self.manifest["nodes"].values() if node["resource_type"] == "test")
        self.expected = Counter(uid for uid in attached if uid is not None)

    def events(self, event: Mapping[str, Any]) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """What one line of dbt's log means in Dagster (mostly nothing)."""
        name = event.get("info", {}).get("name")
        data = event.get("data", {})
        if name == "JinjaLogInfo":
            self._count(data)
            return
        if name not in RESULT_EVENTS:
            return
        unique_id = str(data["node_info"]["unique_id"])
        node = self.manifest["nodes"].get(unique_id)
        if node is None:  # a unit test: dbt's own, not an asset check
            return
        status = str(data["node_info"].get("node_status") or data.get("status") or "")
        if node["resource_type"] in ("model", "seed", "snapshot") and status == "success":
            yield self._materialisation(unique_id, data, status)
        elif node["resource_type"] == "test":
            tested = _attached(node)
            if tested is not None and tested in self.manifest["nodes"]:
                found = self.outcomes.setdefault(tested, [])
                found.append(TestOutcome(node["name"], status, int(data.get("num_failures") or 0)))
                if len(found) == self.expected[tested]:  # its last test: the check is complete
                    yield from self._check(tested)

    def rest(self) -> Iterator[dg.AssetCheckResult]:
        """The checks some of whose tests did not run (dbt skipped them, or stopped): what did run."""
        for tested in sorted(self.outcomes, key=self._check_key_name):
            yield from self._check(tested)

    def _count(self, data: Mapping[str, Any]) -> None:
        found = ROW_COUNT_LINE.match(str(data.get("msg", "")))
        unique_id = data.get("node_info", {}).get("unique_id")
        if found and unique_id:
            self.counts[str(unique_id)] = int(found.group(1))

    def _materialisation(self, unique_id: str, data: Mapping[str, Any], status: str) -> dg.MaterializeResult:
        seconds = round(float(data.get("execution_time") or 0), 3)
        metadata: dict[str, Any] = {"execution_time_s": seconds, "dbt_status": status}
        rows = self.counts.pop(unique_id, None)
        loaded = SEED_LOADED.match(str(data.get("result_message") or ""))
        if rows is None and loaded and self.manifest["nodes"][unique_id]["resource_type"] == "seed":
            rows = int(loaded.group(1))
        if rows is not None:
            metadata["dagster/row_count"] = rows
        key = self.translator.get_asset_spec(self.manifest, unique_id, self.project).key
        return dg.MaterializeResult(asset_key=key, metadata=metadata)

    def _check(self, tested: str) -> Iterator[dg.AssetCheckResult]:
        outcomes = self.outcomes.pop(tested, [])
        spec = self.translator.get_asset_spec(self.manifest, tested, self.project)
        # one check per model whichever test asks (EnterpriseModelTranslator): the model's id stands for its tests'
        check = self.translator.get_asset_check_spec(spec, self.manifest, tested, self.project)
        if check is not None and check.key in self.selected and outcomes:
            yield check_result(check.key, outcomes)

    def _check_key_name(self, tested: str) -> str:
        return self.translator.get_asset_spec(self.manifest, tested, self.project).key.to_user_string()


def _attached(test: Mapping[str, Any]) -> str | None:
    """The node a test is about: its model's (or seed's) check sums it up."""
    attached = test.get("attached_node") or next(iter(test["depends_on"]["nodes"]), None)
    return str(attached) if attached is not None else None


PROGRESS_EVERY = 50  # nodes between two progress lines in the dbt step's log
GOOD = ("success", "pass")


@dataclass
class BuildProgress:
    """What the dbt step logs while dbt runs: every node that did not succeed, as dbt words it, and a count of
    the nodes done every ``every`` nodes and at the end.

    Each node's outcome is on its materialisation or in its model's check already. A log line for every node as
    well made the dbt step's log a quarter of a build run's event-log writes, and each write is a connection and
    a commit of the instance's SQLite event log (docs/testing.md, "Where a run's CPU goes").
    """

    every: int = PROGRESS_EVERY
    done: int = 0

    def lines(self, event: Mapping[str, Any]) -> list[tuple[bool, str]]:
        """(whether it is a failure, the line) for one line of dbt's structured log."""
        info = event.get("info", {})
        if info.get("name") not in RESULT_EVENTS:
            return []
        data = event.get("data", {})
        self.done += 1
        status = str(data.get("node_info", {}).get("node_status") or data.get("status") or "").lower()
        total = data.get("total") or data.get("num_models")
        out = [] if status in GOOD else [(True, str(info.get("msg", "")))]
        if self.done % self.every == 0 or self.done == total:
            out.append((False, f"dbt: {self.done} of {total or '?'} nodes done"))
        return out


def check_result(check: dg.AssetCheckKey, outcomes: Sequence[TestOutcome]) -> dg.AssetCheckResult:
    """A model's check: passed when all its tests passed; an error when one failed or erred, a warning when one
    only warned; every test with its status and failing rows in the metadata."""
    bad = [t for t in outcomes if t.status != "pass"]
    failed = [t for t in bad if t.status in ("fail", "error")]
    summary = f"{len(outcomes) - len(bad)} of {len(outcomes)} dbt tests passed"
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR if failed or not bad else dg.AssetCheckSeverity.WARN,
        description=summary + ("; " + "; ".join(f"{t.name}: {t.status}" for t in bad) if bad else ""),
        metadata={
            "tests": dg.MetadataValue.json(
                {t.name: {"status": t.status, "failing_rows": t.failures} for t in outcomes}
            ),
            "failing_rows": sum(t.failures for t in outcomes),
        },
    )


def with_row_counts(
    events: Sequence[dg.MaterializeResult | dg.AssetCheckResult], build_db: Path, limits: Limits
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The events, each materialised table with its row count counted in the build warehouse
    (``dagster/row_count``; views have none): for a build on Spark, whose tables come back into the warehouse
    after dbt ends (docs/decisions/0048), where dbt's log holds no count."""
    keys = [e.asset_key for e in events if isinstance(e, dg.MaterializeResult) and e.asset_key is not None]
    relations = [(key.path[0], key.path[-1]) for key in keys if len(key.path) == 2]
    with connect(build_db, read_only=True, limits=limits) as conn:
        counts = table_row_counts(conn, relations)
    for event in events:
        key = event.asset_key
        if isinstance(event, dg.MaterializeResult) and key is not None and tuple(key.path) in counts:
            rows = counts[(key.path[0], key.path[-1])]
            metadata: dict[str, Any] = {**(event.metadata or {}), "dagster/row_count": rows}
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        else:
            yield event
