"""ConfigService: validate-then-commit is atomic across every writer over one store."""

from __future__ import annotations

import threading

from meshpilot.server.config_service import ConfigService
from meshpilot.store import SqliteStore
from meshpilot.store.protocol import ConfigStore

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: myapp, namespace: default}
spec:
  selector: {app: myapp}
  ports: [{name: http, port: 8080}]
"""


def test_writers_over_one_store_wait_for_the_store_write_lock(any_store: ConfigStore) -> None:
    """A second ConfigService (the delivery controller's, say) waits while another writer
    holds the store's write lock, so neither validates against a state about to change
    (on both store implementations)."""
    store = any_store
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


def _config_map(name: str, size: int) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"
            f"data: {{blob: {'x' * size}}}\n")


def test_a_full_database_is_a_507_naming_the_cause_and_keeps_what_was_there(
        store: SqliteStore) -> None:
    """SQLite itself reports SQLITE_FULL once the database may not grow (max_page_count:
    real SQLite refusing the write, as on a full disk)."""
    service = ConfigService(store)
    assert service.apply([("svc.yaml", SERVICE)]).status == 200
    before = store.list()
    conn = store._db()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    outcome = service.apply([("big.yaml", _config_map("big", 100_000))])
    assert outcome.status == 507
    [d] = outcome.diagnostics
    assert d.code == "MP0053"
    assert "the disk is full" in d.message and "SQLITE_FULL" in d.message
    assert str(store.path) in d.message and "nothing was written" in d.message
    assert store.list() == before and store.revision() == 1
    # once there is room again, the same apply goes through
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert service.apply([("big.yaml", _config_map("big", 100_000))]).status == 200
    assert [o.key.name for o in store.list()] == ["big", "myapp"]
