"""The one place a control plane's store is made, from its ``--store`` URL (see
:mod:`meshpilot.store.url`)."""

from __future__ import annotations

from pathlib import Path

from meshpilot.store.election import AlwaysLeader, Election
from meshpilot.store.etcd import EtcdStore
from meshpilot.store.protocol import ConfigStore
from meshpilot.store.sqlite import SqliteStore
from meshpilot.store.url import StoreSpec


def open_store(spec: StoreSpec, database: Path) -> ConfigStore:
    """The store ``spec`` names: etcd, or the SQLite file at ``database``."""
    if spec.is_etcd:
        return EtcdStore(list(spec.endpoints), prefix=spec.prefix)
    return SqliteStore(database)


def leadership(store: ConfigStore, identity: str) -> AlwaysLeader | Election:
    """Who leads among the control planes on ``store``: an election among the replicas
    on one etcd prefix; the only control plane of a SQLite file."""
    if isinstance(store, EtcdStore):
        return Election(store.endpoints, store.prefix + "leader", identity)
    return AlwaysLeader()
