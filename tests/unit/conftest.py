"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshpilot.store import SqliteStore
from meshpilot.store.etcd import EtcdStore
from meshpilot.store.protocol import ConfigStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A fresh SQLite store in the test's directory, closed afterwards."""
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


@dataclass
class Backend:
    """One store implementation under test: ``open`` makes a store (another handle on the
    same data each time: the same file, or the same etcd prefix); ``base`` is the
    revision before the test's first commit, so the n-th commit's revision is
    ``base + n`` on both (etcd's revisions are the cluster's, shared by every test)."""

    name: str
    open: Callable[..., ConfigStore]
    base: int = 0
    opened: list[ConfigStore] = field(default_factory=list)

    def rv(self, n: int) -> int:
        return self.base + n


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same store tests on SQLite and on a real etcd."""
    if request.param == "sqlite":
        def open_sqlite(**kw: Any) -> ConfigStore:
            return SqliteStore(tmp_path / "store.db", **kw)
        made = Backend("sqlite", open_sqlite)
    else:
        cluster = request.getfixturevalue("etcd_server")
        prefix = request.getfixturevalue("etcd_prefix")

        def open_etcd(**kw: Any) -> ConfigStore:
            return EtcdStore(cluster.endpoints, prefix=prefix, **kw)
        revision = httpx.post(f"{cluster.endpoints[0]}/v3/kv/range",
                              json={"key": "AA=="}).json()["header"]["revision"]
        made = Backend("etcd", open_etcd, int(revision))
    opener = made.open

    def tracked(**kw: Any) -> ConfigStore:
        store = opener(**kw)
        made.opened.append(store)
        return store
    made.open = tracked
    yield made
    for store in made.opened:
        store.close()


@pytest.fixture
def any_store(backend: Backend) -> ConfigStore:
    """A fresh store of each implementation in turn."""
    return backend.open()
