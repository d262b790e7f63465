"""The model artefact, versioned beside its metrics and its card.

Each version is a folder under ``Settings.churn_models_dir`` named by the model's version: ``model.pkl``
(the fitted model), ``metrics.json`` (its held-out metrics) and ``card.json`` (what the catalog shows:
training window, features, metrics, owner, intended use). A version folder is written whole under a
temporary name and renamed into place, so a reader never sees half a version; ``current.json`` names the
version that scoring uses and is replaced atomically too. Writing the same version again changes nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dataops.models.churn import ChurnModel

MODEL_FILE = "model.pkl"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.json"
CURRENT_FILE = "current.json"


class NoModel(FileNotFoundError):
    """No model has been trained yet under this directory."""


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def save(root: Path, model: ChurnModel, metrics: dict[str, Any], card: dict[str, Any]) -> Path:
    """Write a version (if it is not there yet) and make it the current one; return its folder."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / model.version
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{model.version}-", dir=root))
        try:
            with (staging / MODEL_FILE).open("wb") as handle:
                pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
            _json(staging / METRICS_FILE, metrics)
            _json(staging / CARD_FILE, card)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    pointer = root / f".{CURRENT_FILE}.tmp"
    _json(pointer, {"version": model.version})
    os.replace(pointer, root / CURRENT_FILE)
    return target


def current_version(root: Path) -> str:
    path = root / CURRENT_FILE
    if not path.exists():
        raise NoModel(f"no churn model trained under {root}: retrain first (dataops model train)")
    return str(json.loads(path.read_text())["version"])


def load(root: Path, version: str | None = None) -> ChurnModel:
    """A version's model (by default the current one). Only the platform's own files are unpickled."""
    folder = root / (version or current_version(root))
    with (folder / MODEL_FILE).open("rb") as handle:
        model = pickle.load(handle)
    if not isinstance(model, ChurnModel):
        raise TypeError(f"{folder / MODEL_FILE} does not hold a churn model")
    return model


def read_json(root: Path, name: str, version: str | None = None) -> dict[str, Any]:
    folder = root / (version or current_version(root))
    value = json.loads((folder / name).read_text())
    assert isinstance(value, dict)
    return value


def write_beside(root: Path, version: str, name: str, value: dict[str, Any]) -> Path:
    """Another measurement of a version (an evaluation against the simulator's truth), beside its metrics."""
    path = root / version / name
    _json(path, value)
    return path
