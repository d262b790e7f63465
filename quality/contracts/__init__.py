"""Ingestion contracts: one pandera model per source table, with its key, references and aliases."""

from __future__ import annotations

from graphlib import TopologicalSorter

from quality.contracts import accounting, crm, erp
from quality.contracts.base import Alias, Contract


def parents_first(contracts: list[Contract]) -> list[Contract]:
    """The contracts in an order where every table comes after the tables it references: a table's orphans
    are judged against its parents, so whatever loads tables in turn loads the parents first."""
    by_name = {c.name: c for c in contracts}
    graph = {
        c.name: {f"{c.system}.{parent}" for parent, _ in c.references.values()} & by_name.keys() for c in contracts
    }
    return [by_name[name] for name in TopologicalSorter(graph).static_order()]


# By system, parents first: ingestion (one step per source) and `dataops lake rebuild-raw` load in this order.
CONTRACTS: dict[str, Contract] = {
    c.name: c for system in (erp, crm, accounting) for c in parents_first(list(system.CONTRACTS))
}


def contract_for(system: str, table: str) -> Contract:
    try:
        return CONTRACTS[f"{system}.{table}"]
    except KeyError:
        known = ", ".join(sorted(CONTRACTS))
        raise KeyError(f"no ingestion contract for {system}.{table}; contracts exist for: {known}") from None


__all__ = ["CONTRACTS", "Alias", "Contract", "contract_for", "parents_first"]
