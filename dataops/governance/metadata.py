"""The metadata protocol: what every published dataset must declare, read from the dbt manifest.

Declared by the dataset's owners in its dbt YAML (``config.meta``): owner, domain, classification, grain, key,
sort order, refresh schedule, retention; personal-data columns are tagged ``pii``. Derived, never typed
twice: upstream datasets and source systems (the manifest's lineage) and who may read it (the policy).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.core.settings import DBT_PROJECT_DIR
from registry.loader import domain_owners

PUBLISHED_SCHEMAS = ("marts", "kpis", "reference")
# The central list of what every published dataset must declare (a test fails when one lacks any).
REQUIRED_FIELDS = (
    "description",
    "owner",
    "domain",
    "classification",
    "grain",
    "key",
    "sort_order",
    "refresh_schedule",
    "retention_days",
)
CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")


@dataclass
class ColumnMeta:
    name: str
    description: str
    data_type: str
    is_pii: bool


@dataclass
class DatasetMeta:
    dataset: str  # schema.table
    description: str
    meta: dict[str, Any]
    columns: list[ColumnMeta]
    upstream: list[str] = field(default_factory=list)
    source_systems: list[str] = field(default_factory=list)

    @property
    def classification(self) -> str:
        return str(self.meta.get("classification", ""))

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.is_pii]

    def missing(self) -> list[str]:
        values = {"description": self.description, **self.meta}
        gaps = [f for f in REQUIRED_FIELDS if values.get(f) in (None, "", [])]
        if self.classification and self.classification not in CLASSIFICATIONS:
            gaps.append(f"classification ({self.classification!r} is not one of {', '.join(CLASSIFICATIONS)})")
        gaps += [f"description of column {c.name}" for c in self.columns if not c.description]
        if self.pii_columns:  # the key of a row about a person links its pseudonyms back to the person
            key = self.meta.get("key") or []
            gaps += [
                f"pii tag on key column {c} (a key of rows with personal data links their pseudonyms back)"
                for c in ([key] if isinstance(key, str) else key)
                if c not in self.pii_columns
            ]
        return gaps


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    return {**node.get("meta", {}), **node.get("config", {}).get("meta", {})}


def _dataset_name(node: dict[str, Any]) -> str:
    return f"{node['schema']}.{node['name']}"


def load_manifest(path: Path | None = None, attempts: int = 20) -> dict[str, Any]:
    """dbt's manifest. dbt rewrites the file in place on every command, so a reader can catch it half
    written: it is read again for a few seconds before that counts as an error."""
    manifest = path or DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.exists():
        from dataops.transform.runner import prepare_manifest

        prepare_manifest()
    attempt = 1
    while True:
        try:
            data: dict[str, Any] = json.loads(manifest.read_text())
            return data
        except json.JSONDecodeError as exc:
            if attempt >= attempts:
                raise ValueError(f"{manifest} is not valid JSON ({exc}); run `dataops dbt parse`") from exc
        attempt += 1
        time.sleep(0.25)


def published_datasets(manifest: dict[str, Any]) -> dict[str, DatasetMeta]:
    """Every model and seed that publishing copies to analysts, with its declared and derived metadata."""
    nodes = {**manifest["nodes"], **manifest.get("sources", {})}
    owners = domain_owners()
    out: dict[str, DatasetMeta] = {}
    for unique_id, node in manifest["nodes"].items():
        if node["resource_type"] not in {"model", "seed"} or node["schema"] not in PUBLISHED_SCHEMAS:
            continue
        columns = [
            ColumnMeta(
                c["name"],
                c.get("description", ""),
                str(c.get("data_type") or ""),
                "pii" in set(c.get("tags") or []) | set(c.get("config", {}).get("tags") or []),
            )
            for c in node["columns"].values()
        ]
        direct = [nodes[p] for p in node.get("depends_on", {}).get("nodes", []) if p in nodes]
        upstream = sorted(
            {_dataset_name(p) if p["resource_type"] != "source" else f"{p['source_name']}.{p['name']}" for p in direct}
        )
        meta = _meta(node)
        if "owner" not in meta and meta.get("domain") in owners:  # the domain's owner, from the registry
            meta = {**meta, "owner": owners[meta["domain"]]}
        out[_dataset_name(node)] = DatasetMeta(
            _dataset_name(node),
            node.get("description", ""),
            meta,
            columns,
            upstream,
            sorted(_sources_of(unique_id, nodes)),
        )
    return out


def _sources_of(unique_id: str, nodes: dict[str, Any]) -> set[str]:
    seen, todo, systems = set(), [unique_id], set()
    while todo:
        current = todo.pop()
        for parent in nodes.get(current, {}).get("depends_on", {}).get("nodes", []):
            if parent in seen or parent not in nodes:
                continue
            seen.add(parent)
            if nodes[parent]["resource_type"] == "source":
                systems.add(nodes[parent]["source_name"])
            else:
                todo.append(parent)
    return systems


def metadata_problems(datasets: dict[str, DatasetMeta]) -> list[str]:
    return [f"{name}: missing {gap}" for name, ds in sorted(datasets.items()) for gap in ds.missing()]
