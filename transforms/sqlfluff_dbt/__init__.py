"""dbt's ``var()``, ``env_var()``, ``target`` and ``adapter.dispatch`` for sqlfluff's jinja templater
(library_path in .sqlfluff): the project's var defaults from dbt_project.yml and the default (DuckDB) side of
each dispatched macro, so the linted SQL is the SQL dbt compiles for DuckDB."""

from pathlib import Path
from typing import Any

import yaml
from jinja2 import pass_context
from jinja2.runtime import Context

_VARS = yaml.safe_load((Path(__file__).resolve().parent.parent / "dbt_project.yml").read_text())["vars"]


def var(name: str, default: Any = None) -> Any:
    return _VARS.get(name, default)


def env_var(name: str, default: str = "") -> str:
    return default or f"'{name}'"


class _Adapter:
    """dbt's ``adapter.dispatch``: the project's ``default__`` implementation, the SQL DuckDB runs."""

    @staticmethod
    @pass_context
    def dispatch(context: Context, name: str, macro_namespace: str | None = None) -> Any:
        return context[f"default__{name}"]


adapter = _Adapter()


class _Target:
    """dbt's ``target``: the default one, DuckDB's build warehouse."""

    type = "duckdb"
    name = "build"


target = _Target()
