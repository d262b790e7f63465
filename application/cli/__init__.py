"""The project's command line, ``dataops``: one Typer app, a module per group of commands."""

from __future__ import annotations

from application.cli.main import app

__all__ = ["app"]
