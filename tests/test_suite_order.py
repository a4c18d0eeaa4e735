"""The suite's own schedule: the files ``tests/conftest.py`` starts first exist (a renamed file would
silently fall back to the end of the order, where a long file makes one worker finish alone)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LONGEST_FILES_FIRST


def test_the_longest_files_listed_first_exist_once_each():
    here = Path(__file__).parent
    missing = [name for name in LONGEST_FILES_FIRST if not (here / name).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FILES_FIRST names files that do not exist: {missing}"
    assert len(set(LONGEST_FILES_FIRST)) == len(LONGEST_FILES_FIRST)
