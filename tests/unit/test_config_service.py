"""ConfigService: validate-then-commit is atomic across every writer over one store."""

from __future__ import annotations

import threading

from meshpilot.server.config_service import ConfigService
from meshpilot.store import SqliteStore

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: myapp, namespace: default}
spec:
  selector: {app: myapp}
  ports: [{name: http, port: 8080}]
"""


def test_writers_over_one_store_wait_for_the_store_write_lock(store: SqliteStore) -> None:
    """A second ConfigService (the delivery controller's, say) waits while another writer
    holds the store's write lock, so neither validates against a state about to change."""
    done = threading.Event()

    def apply() -> None:
        ConfigService(store).apply([("svc.yaml", SERVICE)])
        done.set()

    with store.write_lock:
        writer = threading.Thread(target=apply)
        writer.start()
        assert not done.wait(0.3)
        assert store.list() == []
    assert done.wait(10)
    writer.join()
    assert [o.key.name for o in store.list()] == ["myapp"]
