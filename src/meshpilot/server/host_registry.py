"""Hosts that joined a WorkloadGroup: their registration, identity and health.

Istio's WorkloadGroup auto-registration, for hosts the control plane does not run:

- **Join.** A host presents a join token (single use, bound to one group), its address
  and a CSR for the group's service account. The control plane signs the CSR (the key
  stays on the host), and registers a WorkloadEntry named ``GROUP-ADDRESS`` from the
  group's template and metadata, annotated ``istio.io/autoRegistrationGroup``, through
  the same validated path as every apply. The host gets its certificate, the xDS token
  of its sidecar's node id, and a credential for its reports.
- **Health.** The host's agent reports every few seconds whether the group's probe
  passes. The entry's ``Healthy`` condition is True only while reports arrive within
  ``timeout`` and say ready, so a host that goes silent (crashed, cut off) leaves the
  endpoints within ``timeout`` plus a check interval; after ``grace`` of silence its
  entry is deleted.
- **SDS.** The sidecar on that host is served its certificate chain with the private key
  named by its *file on that host* (Envoy reads it there), never the key itself, which
  the control plane never had.

Reports are kept in memory: after a restart, an entry is healthy again once its host
reports, and removed if it never does.

**Replicas.** With several control-plane replicas on one etcd, the members and their
latest reports are also written to the state the replicas share
(:class:`~meshpilot.store.shared.SharedRecords`): a host joins at one replica and reports
to whichever answers, every replica serves its sidecar's secret, and the leader judges
its health from the shared reports (a report counts when its record changed since the
leader last looked, by etcd's revision, so no two machines' clocks are compared).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import NETWORKING as NETWORKING_GROUP
from meshpilot.api.workload_group import AUTO_REGISTRATION_ANNOTATION, WorkloadGroup
from meshpilot.mesh.model import InboundPort, ProxyNode
from meshpilot.mesh.protocols import port_protocol
from meshpilot.proxy.bootstrap import node_id
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.csr import CertificateRequestRefused
from meshpilot.security.files import write_private
from meshpilot.security.identity import workload_identity
from meshpilot.security.join_tokens import JoinRefused, JoinTokenBook
from meshpilot.security.proxy_tokens import BoundIdentity, ProxyTokens
from meshpilot.server import host_gateways
from meshpilot.server.config_service import ConfigService
from meshpilot.store import ConfigStore, NotFound, PutStatus
from meshpilot.store.etcd_client import EtcdError, EtcdUnavailable
from meshpilot.store.shared import SharedRecords
from meshpilot.telemetry.envoy_stats import STATS_PARAMS
from meshpilot.validation.codes import JOIN_REFUSED

log = logging.getLogger(__name__)

CONTROLLER_ANNOTATION = "istio.io/workloadController"
DEFAULT_TIMEOUT = 10.0
DEFAULT_GRACE = 300.0
CHECK_SECONDS = 0.5
MEMBERS_AREA = "hosts"
REPORTS_AREA = "host-reports"


@dataclass(frozen=True)
class HostHealth:
    """How long a joined host may stay silent: ``timeout`` before it leaves the
    endpoints, ``grace`` before its entry is deleted (``up --host-timeout/--host-grace``)."""

    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE

    @classmethod
    def of(cls, timeout: timedelta | None, grace: timedelta | None) -> HostHealth:
        return cls(timeout.total_seconds() if timeout else DEFAULT_TIMEOUT,
                   grace.total_seconds() if grace else DEFAULT_GRACE)


class JoinError(Exception):
    """A join refused: ``status`` for the HTTP answer, ``code`` its diagnostic code."""

    def __init__(self, status: int, code: str, message: str,
                 diagnostics: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.diagnostics = status, code, diagnostics or []


@dataclass(frozen=True)
class JoinRequest:
    token: str
    group: str  # NS/NAME
    address: str
    csr_pem: bytes
    key_file: str  # where the host's Envoy reads its private key (on that host)


@dataclass(frozen=True)
class HostCredential:
    """A joined host's sidecar secrets: the chain issued from its CSR, and its key named
    by its path on that host (``key_pem`` is empty: the control plane never holds it)."""

    chain_pem: bytes
    key_file: str
    roots_pem: bytes
    key_pem: bytes = b""


@dataclass
class _Member:
    key: ObjectKey
    node_id: str
    credential: HostCredential
    last_seen: float
    account: str = "default"  # the service account its certificates are issued for
    ready: bool = False
    reported: bool = False  # since this control plane started
    registered: bool = True  # its entry was stored (False only during its join)
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # the group's port name -> number
    stats: tuple[int, bytes] = (0, b"")  # its sidecar's last counters: (epoch, /stats JSON)
    gateway: bool = False  # it runs its network's east-west gateway (host_gateways)


@dataclass
class HostRegistry:
    """Joins, reports and health of the hosts in the mesh (see the module)."""

    store: ConfigStore
    config: ConfigService
    tokens: JoinTokenBook
    proxy_tokens: ProxyTokens
    ca: Callable[[], CertificateAuthority]
    cert_ttl: timedelta
    xds_address: Callable[[], str]
    changed: Callable[[], None] = lambda: None
    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE
    clock: Callable[[], float] = time.monotonic
    leading: Callable[[], bool] = lambda: True
    """Whether this replica judges health (the leader among replicas on one etcd; it
    must be the one the hosts report to: reports are not shared between replicas)."""
    members_file: Path | None = None
    """Where the members are kept (entry, node id, certificate chain, key file path:
    nothing secret), so a restarted control plane still serves their sidecars and takes
    their reports; silence is counted from its start."""
    shared: SharedRecords | None = None
    """The replicas' shared state (etcd), where members and reports go too; None with
    SQLite (one control plane)."""
    replicas: Callable[[], list[dict[str, Any]]] = list
    """The live replicas (API URL, mutual-TLS xDS address), told to hosts so they can go
    on with another when theirs dies."""
    sync_also: Callable[[], None] = lambda: None
    """More of the replicas' shared state to take each round (the joined pods' sidecar
    certificates, :mod:`meshpilot.server.shared_pod_credentials`)."""
    _report_revisions: dict[ObjectKey, int] = field(default_factory=dict)
    _members: dict[ObjectKey, _Member] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._members = self._load()

    def _load(self) -> dict[ObjectKey, _Member]:
        if self.members_file is None:
            return {}
        try:
            rows = json.loads(self.members_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        now = self.clock()
        return {m.key: m for m in (_member(row, now) for row in rows)}

    def _save(self) -> None:
        """Called under the lock."""
        if self.members_file is None:
            return
        rows = [_record(m) for m in self._members.values()]
        self.members_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.members_file, json.dumps(rows).encode())

    # --- join --------------------------------------------------------------------
    def join(self, request: JoinRequest) -> dict[str, Any]:
        """Register the host; raises :class:`JoinError` and changes nothing if refused.
        The token is checked before any other work, and spent once all else passed."""
        namespace, name = _group_ref(request.group)
        try:
            self.tokens.check(request.token, request.group)
        except JoinRefused as exc:
            raise JoinError(403, JOIN_REFUSED.code, str(exc)) from None
        group = self._group(namespace, name)
        entry = _entry(group, namespace, name, request.address)
        key = ObjectKey(NETWORKING_GROUP, "WorkloadEntry", namespace, entry["metadata"]["name"])
        self._check_entry(entry)
        account = group.spec.template.service_account or "default"
        ca = self.ca()
        issued = self._sign(ca, request.csr_pem, namespace, account)
        try:
            self.tokens.spend(request.token, request.group)
        except JoinRefused as exc:
            raise JoinError(403, JOIN_REFUSED.code, str(exc)) from None
        node = node_id("sidecar", request.address, key.name, namespace)
        member = _Member(key, node, HostCredential(issued.chain_pem, request.key_file,
                                                   ca.trust_bundle.pem), self.clock(), account,
                         registered=False, address=request.address,
                         labels=dict(entry["spec"].get("labels") or {}),
                         ports=dict(entry["spec"].get("ports") or {}))
        with self._lock:
            self._members[key] = member
            self._save()
        outcome = self.config.apply([("<host join>", json.dumps(entry))])
        if outcome.status != 200:
            with self._lock:
                self._members.pop(key, None)
                self._save()
            raise JoinError(outcome.status, JOIN_REFUSED.code, "the WorkloadEntry was refused",
                            [d.to_dict() for d in outcome.diagnostics])
        self._share(member)  # before it counts as registered: a sync would drop it
        member.registered = True
        self.changed()
        return {
            "entry": key.name, "namespace": namespace, "nodeId": node,
            "serviceAccount": account, "identity": issued.identity.uri,
            "certificateChain": issued.chain_pem.decode(), "roots": ca.trust_bundle.pem.decode(),
            "xdsToken": self._sidecar_token(member),
            "hostToken": self.proxy_tokens.token_for(_host_subject(key)),
            "xds": self.xds_address(), "labels": entry["spec"].get("labels", {}),
            "ports": entry["spec"].get("ports", {}),
            "locality": entry["spec"].get("locality", ""),
            "probe": group.spec.model_dump(by_alias=True, exclude_none=True).get("probe"),
            "reportSeconds": max(1.0, self.timeout / 4),
            "replicas": self.reachable(),
            "statsQuery": dict(STATS_PARAMS),
        }

    def reachable(self) -> list[dict[str, str]]:
        """Every live replica a host can turn to: its API URL and mutual-TLS xDS."""
        return [{"api": str(r["api"]), "xds": str(r["xds_tls"]),
                 "leading": r.get("leading") is True}
                for r in self.replicas() if r.get("api") and r.get("xds_tls")]

    def group_of(self, ref: str) -> WorkloadGroup:
        """The stored WorkloadGroup ``NS/NAME``; :class:`JoinError` if there is none."""
        return self._group(*_group_ref(ref))

    def _group(self, namespace: str, name: str) -> WorkloadGroup:
        stored = self.store.get(ObjectKey(NETWORKING_GROUP, "WorkloadGroup", namespace, name))
        if stored is None:
            raise JoinError(404, "MP0021", f"WorkloadGroup {namespace}/{name} not found; "
                                           "apply it before hosts join it")
        try:
            return WorkloadGroup.model_validate(stored.body)
        except ValidationError as exc:
            raise JoinError(409, JOIN_REFUSED.code,
                            f"WorkloadGroup {namespace}/{name} is no longer valid: "
                            f"{exc.errors()[0]['msg']}") from None

    def _check_entry(self, entry: dict[str, Any]) -> None:
        outcome = self.config.apply([("<host join>", json.dumps(entry))], dry_run=True)
        if outcome.status != 200:
            raise JoinError(outcome.status, JOIN_REFUSED.code, "the WorkloadEntry would be refused",
                            [d.to_dict() for d in outcome.diagnostics])

    def _sign(self, ca: CertificateAuthority, csr_pem: bytes, namespace: str,
              account: str) -> Any:
        try:
            identity = workload_identity(namespace, account, trust_domain=ca.trust_domain)
            return ca.issue(csr_pem, identity, ttl=self.cert_ttl)
        except (CertificateRequestRefused, ValueError) as exc:
            raise JoinError(400, JOIN_REFUSED.code, f"the CSR was refused: {exc}") from None

    # --- reports -------------------------------------------------------------------
    def report(self, namespace: str, entry: str, host_token: str, ready: bool,
               stats: tuple[int, bytes] = (0, b"")) -> bool:
        """A host's report, with its sidecar's counters (epoch, /stats JSON) if it sent
        them; False (nothing recorded) if its credential is not the one issued for that
        entry, or the entry is not one that joined here."""
        key = ObjectKey(NETWORKING_GROUP, "WorkloadEntry", namespace, entry)
        if not self.proxy_tokens.verify(_host_subject(key), host_token):
            return False
        if key not in self._members and self.shared is not None:
            try:
                self._sync_members()  # it joined at another replica a moment ago
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("members not synced with the other replicas: %s", exc)
        with self._lock:
            member = self._members.get(key)
            if member is None:
                return False
            member.last_seen, member.ready, member.reported = self.clock(), ready, True
            if stats[1]:
                member.stats = stats
        if self.shared is not None:  # for the leader, whichever replica it is
            try:
                revision = self.shared.put(REPORTS_AREA, _name(key), {"ready": ready})
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("report of %s not shared with the other replicas: %s",
                            _name(key), exc)
                return True
            with self._lock:
                self._report_revisions[key] = revision
        return True

    def member(self, namespace: str, entry: str, host_token: str) -> ObjectKey | None:
        """The entry of a host that joined, if ``host_token`` is the credential issued
        for it; None otherwise (no such member, or not its credential)."""
        key = ObjectKey(NETWORKING_GROUP, "WorkloadEntry", namespace, entry)
        if not self.proxy_tokens.verify(_host_subject(key), host_token):
            return None
        with self._lock:
            return key if key in self._members else None

    def sidecar_token(self, namespace: str, entry: str, host_token: str) -> str | None:
        """The xDS token of a member's sidecar as this control plane issues it now (its
        agent takes a different one: see :mod:`meshpilot.hosts.agent`); None if the
        credential is not that entry's or it is no member."""
        key = self.member(namespace, entry, host_token)
        with self._lock:
            member = self._members.get(key) if key is not None else None
        return self._sidecar_token(member) if member is not None else None

    def _sidecar_token(self, member: _Member) -> str:
        return self.proxy_tokens.issue(member.node_id, BoundIdentity.issued(
            kind="sidecar", namespace=member.key.namespace, workload=member.key.name,
            name=member.key.name, service_account=member.account, labels=member.labels))

    def gateway(self, namespace: str, entry: str, host_token: str) -> dict[str, Any] | None:
        """The member runs its network's east-west gateway: its node id and xDS token
        (see :mod:`meshpilot.server.host_gateways`); None if the credential is not that
        entry's or it is no member."""
        key = self.member(namespace, entry, host_token)
        if key is None:
            return None
        with self._lock:
            member = self._members[key]
            member.gateway = True
            self._save()
        self._share(member)
        self.changed()
        node = host_gateways.node_id(key, member.address)
        return {"nodeId": node, "port": host_gateways.PORT,
                "xdsToken": self.proxy_tokens.issue(node, host_gateways.identity(member.address))}

    def gateways(self) -> host_gateways.Joined:
        """The joined hosts' gateways that may serve: their host has not reported
        unready (a replica that gets no reports serves every one)."""
        with self._lock:
            return {host_gateways.node_id(m.key, m.address): (m.key, m.address)
                    for m in self._members.values()
                    if m.gateway and m.registered and (m.ready or not m.reported)}

    def renew(self, namespace: str, entry: str, host_token: str, csr_pem: bytes,
              key_file: str) -> dict[str, Any] | None:
        """A new certificate for a member's new key (made on its host, named by its file
        there); None if the credential is not that entry's or it is no member. Raises
        :class:`JoinError` for a CSR the CA refuses."""
        key = ObjectKey(NETWORKING_GROUP, "WorkloadEntry", namespace, entry)
        if not self.proxy_tokens.verify(_host_subject(key), host_token):
            return None
        with self._lock:
            member = self._members.get(key)
        if member is None:
            return None
        ca = self.ca()
        issued = self._sign(ca, csr_pem, namespace, member.account)
        with self._lock:
            member.credential = HostCredential(issued.chain_pem, key_file, ca.trust_bundle.pem)
            self._save()
        self._share(member)
        self.changed()
        return {"certificateChain": issued.chain_pem.decode(),
                "roots": ca.trust_bundle.pem.decode()}

    def sidecar_stats(self) -> list[tuple[ProxyNode, int, bytes]]:
        """Every joined sidecar whose counters were reported here: its node (as the
        agent describes it to xDS), epoch and latest /stats JSON. Kept by the replica
        that received them (the leader's telemetry counts those reported to it)."""
        with self._lock:
            return [(_node(m), *m.stats) for m in self._members.values() if m.stats[1]]

    def credentials(self) -> Mapping[str, HostCredential]:
        """node id -> its credential, with the CA's current trust bundle."""
        roots = self.ca().trust_bundle.pem
        with self._lock:
            for member in self._members.values():
                if member.credential.roots_pem != roots:
                    member.credential = replace(member.credential, roots_pem=roots)
            return MappingProxyType({m.node_id: m.credential for m in self._members.values()})

    # --- health --------------------------------------------------------------------
    def start(self) -> None:
        """Check health from now on. Silence is counted from one ``timeout`` after now at
        the earliest: the API that takes the reports comes up after this, and a restarted
        control plane must not mark its hosts unhealthy before they could report."""
        self._started = self.clock() + self.timeout
        self._thread = threading.Thread(target=self._run, name="host-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                if self.shared is not None:
                    self.sync()
                    self.sync_also()
                if self.leading():  # the others serve the hosts, the leader judges them
                    self.check()
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("host registry not synced with the other replicas: %s", exc)
            except Exception:  # the next round tries again
                log.exception("host health check failed")

    # --- shared with the other replicas ------------------------------------------------
    def _share(self, member: _Member) -> None:
        if self.shared is not None:
            self.shared.put(MEMBERS_AREA, _name(member.key), _record(member))

    def _unshare(self, key: ObjectKey) -> None:
        if self.shared is not None:
            self.shared.delete(MEMBERS_AREA, _name(key))
            self.shared.delete(REPORTS_AREA, _name(key))

    def sync(self) -> None:
        """Take the members that joined (or renewed) at other replicas and the reports
        any replica received since the last round."""
        self._sync_members()
        assert self.shared is not None
        reports = self.shared.items(REPORTS_AREA)
        now = self.clock()
        with self._lock:
            for name, (revision, value, _lease) in reports.items():
                key = _key(name)
                member = self._members.get(key)
                if member is None or self._report_revisions.get(key) == revision:
                    continue
                self._report_revisions[key] = revision
                member.last_seen, member.ready = now, value.get("ready") is True
                member.reported = True

    def _sync_members(self) -> None:
        assert self.shared is not None
        records = self.shared.items(MEMBERS_AREA)
        now = self.clock()
        changed = False
        with self._lock:
            for record in records.values():
                row = record.value
                fresh = _member(row, now)
                held = self._members.get(fresh.key)
                if held is None:
                    self._members[fresh.key] = fresh
                    changed = True
                elif (held.credential.chain_pem, held.credential.key_file) != (
                        fresh.credential.chain_pem, fresh.credential.key_file):
                    held.credential = replace(fresh.credential,
                                              roots_pem=held.credential.roots_pem)
                    changed = True
            shared = {_key(name) for name in records}
            for key in [k for k, m in self._members.items() if m.registered
                        and k not in shared]:
                del self._members[key]  # removed at another replica
                changed = True
            if changed:
                self._save()
        if changed:
            self.changed()

    def check(self) -> None:
        """One round: every auto-registered entry's Healthy condition set from its
        host's reports; entries silent for longer than ``grace`` deleted."""
        now = self.clock()
        entries = self.store.list(group=NETWORKING_GROUP, kind="WorkloadEntry")
        self._forget_deleted({e.key for e in entries})
        for stored in entries:
            annotations = (stored.body.get("metadata") or {}).get("annotations") or {}
            if AUTO_REGISTRATION_ANNOTATION not in annotations:
                continue
            with self._lock:
                member = self._members.get(stored.key)
                seen = max(member.last_seen, self._started) if member else self._started
                ready = bool(member and member.ready)
                waiting = bool(member and not member.reported and now <= self._started)
            if now - seen > self.grace:
                self._remove(stored.key)
            elif not waiting:  # a restart keeps the condition until the host can report
                self._set_health(stored.key, stored.body,
                                 ready and now - seen <= self.timeout)

    def _forget_deleted(self, present: set[ObjectKey]) -> None:
        """Members whose entry was deleted (``meshpilot delete``) leave: their sidecar's
        secret is no longer served and their next report is refused (join again)."""
        with self._lock:
            gone = [key for key, m in self._members.items()  # looked up again: a join
                    if m.registered and key not in present  # may have just stored it
                    and self.store.get(key) is None]
            for key in gone:
                del self._members[key]
            if gone:
                self._save()
        for key in gone:
            self._unshare(key)
        if gone:
            self.changed()

    def _set_health(self, key: ObjectKey, body: dict[str, Any], healthy: bool) -> None:
        wanted = "True" if healthy else "False"
        conditions = (body.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Healthy" and c.get("status") == wanted for c in conditions):
            return
        reason = "Reported" if healthy else "NotReportedOrNotReady"
        try:
            self.store.commit([PutStatus(key, {"conditions": [{
                "type": "Healthy", "status": wanted, "reason": reason,
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]})])
        except NotFound:
            return
        log.warning("host entry %s/%s is %s", key.namespace, key.name,
                    "healthy" if healthy else "unhealthy")

    def _remove(self, key: ObjectKey) -> None:
        self.config.delete([key], ignore_missing=True)
        with self._lock:
            self._members.pop(key, None)
            self._save()
        self._unshare(key)
        log.warning("host entry %s/%s removed: no report for %.0fs", key.namespace, key.name,
                    self.grace)
        self.changed()


def _record(member: _Member) -> dict[str, Any]:
    """A member as written to the members file and the replicas' shared state (nothing
    secret: the chain is public, the key stays on the host and is named by its path)."""
    return {"key": list(member.key), "nodeId": member.node_id, "account": member.account,
            "chain": member.credential.chain_pem.decode(),
            "keyFile": member.credential.key_file, "address": member.address,
            "labels": member.labels, "ports": member.ports, "gateway": member.gateway}


def _member(row: dict[str, Any], now: float) -> _Member:
    return _Member(ObjectKey(*row["key"]), row["nodeId"], HostCredential(
        row["chain"].encode(), row["keyFile"], b""), now, row.get("account", "default"),
        address=str(row.get("address", "")), labels=dict(row.get("labels") or {}),
        ports=dict(row.get("ports") or {}), gateway=row.get("gateway") is True)


def _node(member: _Member) -> ProxyNode:
    """The joined sidecar as its agent introduces it (see meshpilot.hosts.agent)."""
    return ProxyNode(
        id=member.node_id, kind="sidecar", namespace=member.key.namespace, ip=member.address,
        workload=member.key.name, name=member.key.name, service_account=member.account,
        labels=dict(member.labels),
        inbound=tuple(InboundPort(int(port), int(port), name, port_protocol(name))
                      for name, port in sorted(member.ports.items())))


def _name(key: ObjectKey) -> str:
    return f"{key.namespace}/{key.name}"


def _key(name: str) -> ObjectKey:
    namespace, _, entry = name.partition("/")
    return ObjectKey(NETWORKING_GROUP, "WorkloadEntry", namespace, entry)


def _host_subject(key: ObjectKey) -> str:
    """What a host's report credential is bound to (never a node id: no ``~``)."""
    return f"host/{key.namespace}/{key.name}"


def _group_ref(ref: str) -> tuple[str, str]:
    namespace, _, name = ref.partition("/")
    if not namespace or not name or "/" in name:
        raise JoinError(400, JOIN_REFUSED.code, f"group {ref!r} is not NAMESPACE/NAME")
    return namespace, name


def _entry(group: WorkloadGroup, namespace: str, name: str, address: str) -> dict[str, Any]:
    """The WorkloadEntry of a member at ``address``: Istio's auto-registration (template
    spec plus the address; group metadata labels and annotations; named GROUP-ADDRESS,
    plus -NETWORK when the template names one)."""
    template = group.spec.template.model_dump(by_alias=True, exclude_none=True)
    labels = {**group.spec.metadata.labels, **template.get("labels", {})}
    network = template.get("network")
    entry_name = f"{name}-{address}" + (f"-{network}" if network else "")
    annotations = {**group.spec.metadata.annotations,
                   AUTO_REGISTRATION_ANNOTATION: name, CONTROLLER_ANNOTATION: "meshpilot"}
    return {
        "apiVersion": f"{NETWORKING_GROUP}/v1", "kind": "WorkloadEntry",
        "metadata": {"name": entry_name.replace(":", "-"), "namespace": namespace,
                     "labels": labels, "annotations": annotations},
        "spec": {**template, "address": address, "labels": labels},
    }
