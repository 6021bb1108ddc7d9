"""ConfigService validates against an index the store mirror keeps current: what every
writer commits (this service, another one over the store, the store itself) is what the
next apply or delete is judged against, as when it read the whole store each time."""

from __future__ import annotations

from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.server.config_service import ConfigService
from meshpilot.store import Delete, SqliteStore
from meshpilot.store.mirror import StoreMirror

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  selector: {app: orders}
  ports: [{name: http, port: 8080}]
"""
ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
  - route: [{destination: {host: orders, subset: v1}}]
"""
RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders
  subsets: [{name: v1, labels: {version: v1}}]
"""
SERVICE_KEY = ObjectKey("", "Service", "shop", "orders")
RULE_KEY = ObjectKey("networking.istio.io", "DestinationRule", "shop", "orders")


class Recorder:
    """A mirror listener that records what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def put(self, key: ObjectKey, body: dict[str, Any]) -> None:
        self.told.append(("put", key.name))

    def remove(self, key: ObjectKey) -> None:
        self.told.append(("remove", key.name))


def codes(outcome: Any) -> list[str]:
    return [d.code for d in outcome.diagnostics]


def test_the_mirror_tells_a_listener_what_it_holds_then_each_change(store: SqliteStore) -> None:
    writer = ConfigService(store)
    assert writer.apply([("s.yaml", SERVICE)]).status == 200
    mirror = StoreMirror(store)
    recorder = Recorder()
    mirror.follow(recorder)
    assert recorder.told == [("put", "orders")]
    assert writer.apply([("r.yaml", RULE)]).status == 200
    store.commit([Delete(SERVICE_KEY)])
    assert recorder.told == [("put", "orders")]  # nothing before a poll
    assert mirror.poll(timeout=2)
    assert recorder.told == [("put", "orders"), ("put", "orders"), ("remove", "orders")]
    mirror.close()


def test_an_apply_is_judged_against_what_every_writer_committed(store: SqliteStore) -> None:
    """The route's host and subset come and go through other writers; each apply of the
    route sees the state as it is (MP2001 unknown host, MP1001 unknown subset)."""
    mirror = StoreMirror(store)
    service = ConfigService(store, mirror)
    other = ConfigService(store)  # the delivery controller's, say: no mirror of its own
    assert codes(service.apply([("r.yaml", ROUTE)], dry_run=True)) == ["MP2001", "MP1001"]
    assert other.apply([("s.yaml", SERVICE), ("d.yaml", RULE)]).status == 200
    assert service.apply([("r.yaml", ROUTE)]).status == 200
    assert codes(service.apply([("r.yaml", ROUTE)])) == []
    store.commit([Delete(RULE_KEY)])  # straight to the store
    outcome = service.apply([("r.yaml", ROUTE)])
    assert outcome.status == 422 and codes(outcome) == ["MP1001"]
    mirror.close()


def test_a_delete_warns_of_what_it_breaks_in_the_objects_that_remain(
        store: SqliteStore) -> None:
    """As before the index: deleting the DestinationRule leaves the route's subset
    undefined, said as a warning on the route; deleting an object nothing refers to says
    nothing."""
    mirror = StoreMirror(store)
    service = ConfigService(store, mirror)
    assert service.apply([("all.yaml", "---\n".join((SERVICE, RULE, ROUTE)))]).status == 200
    outcome = service.delete([RULE_KEY])
    assert outcome.status == 200
    [warning] = outcome.diagnostics
    assert (warning.code, warning.severity.value, warning.object, warning.path) == (
        "MP1001", "warning", "VirtualService shop/orders",
        "spec.http[0].route[0].destination.subset")
    plain = ConfigService(store)  # no mirror: the index is built from the store's list
    assert plain.apply([("d.yaml", RULE)]).status == 200
    assert codes(plain.delete([RULE_KEY])) == ["MP1001"]
    assert codes(service.delete([SERVICE_KEY])) == ["MP2001"]
    mirror.close()
