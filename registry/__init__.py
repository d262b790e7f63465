"""The registry: the enterprise's agreed definitions, its access policy and the domain teams' notes.

The bottom layer: data files and their loader, read by the simulated world, the library, dbt (through the
generated vars and seeds) and the catalog. It imports nothing else of the project.
"""

from __future__ import annotations

from pathlib import Path

REGISTRY_DIR = Path(__file__).resolve().parent
ENTERPRISE_FILE = REGISTRY_DIR / "enterprise.yaml"  # states, schema rule, KPIs, close calendar, breakers
POLICY_FILE = REGISTRY_DIR / "policy.yaml"  # roles, grants, brakes
DOMAINS_DIR = REGISTRY_DIR / "domains"  # each domain team's notes on its datasets
