"""Ingestion contracts: one pandera model per source table, with its key, references and aliases."""

from __future__ import annotations

from quality.contracts import accounting, crm, erp
from quality.contracts.base import Alias, Contract

CONTRACTS: dict[str, Contract] = {c.name: c for c in (*erp.CONTRACTS, *crm.CONTRACTS, *accounting.CONTRACTS)}
SYSTEMS = ("erp", "crm", "accounting")


def contract_for(system: str, table: str) -> Contract:
    try:
        return CONTRACTS[f"{system}.{table}"]
    except KeyError:
        known = ", ".join(sorted(CONTRACTS))
        raise KeyError(f"no ingestion contract for {system}.{table}; contracts exist for: {known}") from None


def tables_of(system: str) -> list[str]:
    return [c.table for c in CONTRACTS.values() if c.system == system]


__all__ = ["CONTRACTS", "SYSTEMS", "Alias", "Contract", "contract_for", "tables_of"]
