"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A fresh SQLite store in the test's directory, closed afterwards."""
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()
