"""Where the tests' temporary folders go (tests/conftest.py, docs/decisions/0106): the RAM disk when it has room
and nobody chose another place, and the same place for pytest's folders and for every process a test starts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from tests import conftest


def configured(
    monkeypatch: pytest.MonkeyPatch, ram_disk: Path, room: int, basetemp: str | None = None, tmpdir: str | None = None
) -> str | None:
    """TMPDIR after the session's set-up, for a RAM disk at ``ram_disk`` needing ``room`` bytes free, with the
    caller's own ``--basetemp`` and ``TMPDIR`` if given."""
    monkeypatch.setattr(conftest, "RAM_DISK", ram_disk)
    monkeypatch.setattr(conftest, "RAM_DISK_ROOM", room)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # put back after the test
    for name in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT"):
        monkeypatch.delenv(name, raising=False)
    if tmpdir is not None:
        monkeypatch.setenv("TMPDIR", tmpdir)
    config = SimpleNamespace(option=SimpleNamespace(basetemp=basetemp))
    conftest.temporary_files_in_memory(cast(pytest.Config, config))
    return os.environ.get("TMPDIR")


def test_the_ram_disk_is_used_when_it_has_room(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert configured(monkeypatch, tmp_path, room=1) == str(tmp_path)
    assert tempfile.gettempdir() == str(tmp_path)


def test_no_room_no_ram_disk_or_a_place_chosen_leaves_the_place_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert configured(monkeypatch, tmp_path, room=2**62) is None  # not enough room
    assert configured(monkeypatch, tmp_path / "missing", room=1) is None
    assert configured(monkeypatch, tmp_path, room=1, basetemp=str(tmp_path / "chosen")) is None
    assert configured(monkeypatch, tmp_path, room=1, tmpdir="/elsewhere") == "/elsewhere"


def test_a_tests_folder_and_its_childrens_temporary_files_are_in_one_place(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"], capture_output=True, text=True
    )
    assert tmp_path.resolve().is_relative_to(Path(child.stdout.strip()).resolve())
