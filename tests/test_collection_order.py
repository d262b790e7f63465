"""The two CI workers start with the longest groups (tests/conftest.py, docs/testing.md)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import LONGEST_GROUPS_FIRST, longest_first


def test_the_longest_groups_come_first_then_the_others_by_their_number_of_tests() -> None:
    scopes = ["a.py::t1", "built", "built", "built", "bench", "spark", "ingest", "built", "spark", "x", "x", "recovery"]
    ordered = [scopes[i] for i in longest_first(scopes)]
    assert ordered == [
        "spark", "spark", "recovery", "built", "built", "built", "built", "bench", "ingest", "x", "x", "a.py::t1"
    ]  # fmt: skip
    # the items of one scope keep pytest's order
    assert [i for i in longest_first(scopes) if scopes[i] == "built"] == [1, 2, 3, 7]


def test_every_group_named_longest_first_is_a_group_of_the_suite() -> None:
    """A renamed or removed group would silently lose its early start."""
    used = {
        match
        for path in Path(__file__).parent.rglob("*.py")
        for match in re.findall(r"xdist_group\(\"(\w+)\"\)", path.read_text())
    }
    assert set(LONGEST_GROUPS_FIRST) <= used, set(LONGEST_GROUPS_FIRST) - used
