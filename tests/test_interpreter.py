"""The interpreter the project's venv is made from (Makefile, docs/decisions/0108): the distribution's Python 3.11
where it can make a venv, else the first python3.11 on PATH; and the venv these tests run in is made from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dataops.core.settings import PROJECT_ROOT

DISTRIBUTION = Path("/usr/bin/python3.11")


def chosen(path: str, *overrides: str) -> str:
    """The interpreter `make` makes the venv from, with ``path`` as PATH and ``overrides`` (NAME=value)."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHON", "MAKEFLAGS", "MAKELEVEL"}} | {"PATH": path}
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval=shown-python: ; @echo $(PYTHON)", *overrides, "shown-python"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


def makes_venvs(python: Path) -> bool:
    return python.exists() and subprocess.run([python, "-c", "import ensurepip, venv"]).returncode == 0


def test_the_venv_is_made_from_the_distributions_python_where_it_can_make_one() -> None:
    """Debian's build of CPython is optimised by profile and at link time, a build with pyenv's defaults is not
    (7% of the suite's CPU): the Makefile prefers it to whichever python3.11 comes first on PATH, and
    the venv these tests run in is made from it (a venv made before is kept: `rm -r .venv`, then `make`)."""
    interpreter = chosen(os.environ["PATH"])
    if not makes_venvs(DISTRIBUTION):  # nothing to prefer on this machine: the next test covers the choice
        assert Path(interpreter).name in {"python3.11", "python3"}
        return
    assert interpreter == str(DISTRIBUTION)
    assert Path(sys.base_prefix) == DISTRIBUTION.parent.parent, f"made from {sys.base_prefix}: rm -r .venv"


def test_without_the_distributions_python_the_first_python3_11_on_path_is_chosen(tmp_path: Path) -> None:
    """A machine whose Python 3.11 is only elsewhere (a pyenv, a python.org build): the first on PATH."""
    own = tmp_path / "python3.11"
    own.symlink_to(sys.executable)
    path = os.pathsep.join([str(tmp_path), "/usr/bin", "/bin"])
    assert chosen(path, f"DISTRIBUTION_PYTHON={tmp_path / 'missing'}") == str(own)
    assert chosen(path) == (str(DISTRIBUTION) if makes_venvs(DISTRIBUTION) else str(own))
