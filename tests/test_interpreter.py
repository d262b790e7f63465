"""The interpreter the project's venv is made from (Makefile, docs/decisions/0108): the distribution's Python 3.11
where it can make a venv, else the first python3.11 on PATH; and the venv these tests run in is made from it."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@functools.cache
def makes_venvs(python: Path) -> bool:
    return python.exists() and subprocess.run([python, "-c", "import ensurepip, venv"]).returncode == 0


def test_the_venv_is_made_from_the_distributions_python_where_it_can_make_one() -> None:
    """Debian's build of CPython is optimised by profile and at link time, a build with pyenv's defaults is not
    (7% of the suite's CPU): the Makefile prefers it to whichever python3.11 comes first on PATH, and
    the venv these tests run in is made from it (`make` makes a venv from another one again: the next test)."""
    if "PYTHON" in os.environ or "PYTHON=" in os.environ.get("MAKEFLAGS", ""):
        pytest.skip("the caller chose the interpreter (PYTHON): the Makefile's own choice is the next test's")
    interpreter = chosen(os.environ["PATH"])
    if not makes_venvs(DISTRIBUTION):  # nothing to prefer on this machine: the next test covers the choice
        assert Path(interpreter).name in {"python3.11", "python3"}
        return
    assert interpreter == str(DISTRIBUTION)
    assert Path(sys.base_prefix) == DISTRIBUTION.parent.parent, f"made from {sys.base_prefix}: run `make bootstrap`"


def test_without_the_distributions_python_the_first_python3_11_on_path_is_chosen(tmp_path: Path) -> None:
    """A machine whose Python 3.11 is only elsewhere (a pyenv, a python.org build): the first on PATH."""
    own = tmp_path / "python3.11"
    own.symlink_to(sys.executable)
    path = os.pathsep.join([str(tmp_path), "/usr/bin", "/bin"])
    assert chosen(path, f"DISTRIBUTION_PYTHON={tmp_path / 'missing'}") == str(own)
    assert chosen(path) == (str(DISTRIBUTION) if makes_venvs(DISTRIBUTION) else str(own))


def test_a_venv_made_from_another_interpreter_is_made_again_and_one_made_from_this_one_is_kept(
    tmp_path: Path,
) -> None:
    """The venv records what it was made from (`.venv/.made-from`); `make` makes it again when the choice
    changed (a venv from pyenv's build, say), and leaves it alone when not."""
    shutil.copy(PROJECT_ROOT / "Makefile", tmp_path / "Makefile")
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "kept").touch()
    (venv / ".made-from").write_text("/opt/another/python3.11\n")
    python = f"PYTHON={DISTRIBUTION if makes_venvs(DISTRIBUTION) else sys.executable}"

    def made_from() -> None:
        subprocess.run(["make", "-s", python, ".venv/.made-from"], cwd=tmp_path, check=True, capture_output=True)

    made_from()
    assert not (venv / "kept").exists() and (venv / "bin" / "python").exists()
    assert (venv / ".made-from").read_text().strip() == python.split("=", 1)[1]
    (venv / "kept").touch()
    made_from()
    assert (venv / "kept").exists()
