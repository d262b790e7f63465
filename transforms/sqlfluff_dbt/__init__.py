"""dbt's ``var()`` and ``env_var()`` for sqlfluff's jinja templater (library_path in .sqlfluff): the project's
var defaults from dbt_project.yml, so the linted SQL is the SQL dbt compiles."""

from pathlib import Path
from typing import Any

import yaml

_VARS = yaml.safe_load((Path(__file__).resolve().parent.parent / "dbt_project.yml").read_text())["vars"]


def var(name: str, default: Any = None) -> Any:
    return _VARS.get(name, default)


def env_var(name: str, default: str = "") -> str:
    return default or f"'{name}'"
