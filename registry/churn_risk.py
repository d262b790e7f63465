"""The churn-risk registry (churn_risk.yaml): bands, publishing limits and the CRM action a band triggers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry import REGISTRY_DIR
from registry.loader import read_yaml

CHURN_RISK_FILE = REGISTRY_DIR / "churn_risk.yaml"


class ChurnRiskRegistryError(ValueError):
    """churn_risk.yaml is missing a key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Band:
    name: str
    at_least: float


@dataclass(frozen=True)
class BandAction:
    """Open a CRM task for the account owner when a customer enters ``band`` (once per episode)."""

    name: str
    band: str
    subject: str
    description: str
    due_in_days: int


@dataclass(frozen=True)
class ChurnRiskRules:
    version: str
    bands: tuple[Band, ...]  # highest first
    max_feature_shift_sd: float
    min_customers_for_drift: int
    actions: tuple[BandAction, ...]

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, probability: float) -> str:
        for band in self.bands:
            if probability >= band.at_least:
                return band.name
        return self.bands[-1].name


def load_churn_risk(path: Path = CHURN_RISK_FILE) -> ChurnRiskRules:
    data = read_yaml(path)
    try:
        bands = tuple(Band(str(b["name"]), float(b["at_least"])) for b in data["bands"])
        actions = tuple(
            BandAction(
                str(a["name"]),
                str(a["when_entering_band"]),
                str(a["task_subject"]),
                str(a["task_description"]),
                int(a["due_in_days"]),
            )
            for a in data.get("actions") or []
        )
        rules = ChurnRiskRules(
            version=str(data["version"]),
            bands=bands,
            max_feature_shift_sd=float(data["gate"]["max_feature_shift_sd"]),
            min_customers_for_drift=int(data["gate"]["min_customers_for_drift"]),
            actions=actions,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChurnRiskRegistryError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if [b.at_least for b in bands] != sorted((b.at_least for b in bands), reverse=True) or bands[-1].at_least > 0:
        raise ChurnRiskRegistryError(f"{path}: bands go from the highest threshold down to 0")
    unknown = [a.band for a in actions if a.band not in rules.band_names]
    if unknown:
        raise ChurnRiskRegistryError(f"{path}: actions name bands that do not exist: {unknown}")
    return rules
