"""The store's in-memory mirror: the same objects as the store, kept current by its watch
(on both store implementations)."""

from __future__ import annotations

import pytest
from tests.builders import object_key, stored, virtual_service

from meshpilot.store import Delete
from meshpilot.store.mirror import StoreMirror
from meshpilot.store.protocol import ConfigStore

A, B, C = (virtual_service(name) for name in "abc")


@pytest.fixture
def store(any_store: ConfigStore) -> ConfigStore:
    return any_store


def as_stored(store: ConfigStore) -> list:
    return [(o.key, o.body) for o in store.list()]


def test_the_mirror_follows_puts_updates_and_deletes(store: ConfigStore) -> None:
    store.commit([stored(A), stored(B)])
    mirror = StoreMirror(store)
    assert mirror.objects() == as_stored(store)
    store.commit([stored(virtual_service("a", hosts=["changed.example.com"])), stored(C)])
    store.commit([Delete(object_key(B))])
    assert mirror.catch_up(store.revision(), timeout=5)
    assert mirror.objects() == as_stored(store)
    assert [k.name for k, _ in mirror.objects()] == ["a", "c"]
    assert not mirror.poll(timeout=0.05)  # nothing new
    assert mirror.held() == (store.revision(), mirror.objects())  # every commit held
    mirror.close()


def test_a_change_the_listing_already_saw_is_not_applied_again(store: ConfigStore) -> None:
    store.commit([stored(A)])
    mirror = StoreMirror(store)
    first = store.get(object_key(A))
    assert first is not None
    store.commit([stored(virtual_service("a", hosts=["v2.example.com"]))])
    assert mirror.catch_up(store.revision(), timeout=5)
    # an older event for the same key (as when the listing ran after the commit) changes
    # nothing, nor does a stale delete
    mirror._apply("MODIFIED", object_key(A), first.resource_version, first.body)
    mirror._apply("DELETED", object_key(A), first.resource_version, first.body)
    assert mirror.objects() == as_stored(store)
    mirror.close()


def test_a_mirror_whose_watch_was_cut_off_reads_the_store_afresh(store: ConfigStore) -> None:
    """When the store cuts a watch off (etcd compacted under it, or out of reach for
    long), the mirror lists everything again rather than keep a state that no longer
    follows the store."""
    store.commit([stored(A)])
    mirror = StoreMirror(store)
    mirror._watch.cut_off()
    store.commit([stored(B), stored(C)])
    assert mirror.catch_up(store.revision(), timeout=5)
    assert mirror.objects() == as_stored(store)
    store.commit([Delete(object_key(A))])
    assert mirror.catch_up(store.revision(), timeout=5)  # the new watch follows
    assert [k.name for k, _ in mirror.objects()] == ["b", "c"]
    mirror._watch.cut_off()
    assert mirror.poll(timeout=0.5)  # the control plane's loop: poll reloads too
    assert mirror.objects() == as_stored(store)
    mirror.close()
