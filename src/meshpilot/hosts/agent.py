"""The node agent: join, run the sidecar, report readiness (see the package).

It speaks to the control plane only over TLS that it verifies against the roots it was
given (``--ca-file``, the control plane's ``api-ca.pem``): the join over the API's
HTTPS, the sidecar's xDS over mutual TLS with the certificate the join issued. A plain
``http://`` server is refused, so nothing the host sends or is sent crosses the network
in clear.

Replicas: the join's answer names every live control-plane replica (its API and xDS).
The sidecar's xDS cluster lists them all, so when the stream to one breaks Envoy's
reconnection picks another; the agent sends each report and renewal to the leading replica
(the one that answered last until it knows) and, if it does not answer, to the next, and
learns the current set from every report's answer.

Restarts: besides its rounds (a quarter of ``up --host-timeout``), the agent holds a
watch open (:mod:`meshpilot.server.host_watch`) and reports and syncs its pods at once
when the control plane answers with another epoch (it restarted, another replica leads,
or the Deployments placed on this node changed) or answers again after the connection
broke, so a restarted control plane has this host's pods as endpoints again within a
second or so instead of at the next round.

Telemetry: each report carries the sidecar's counters (its admin ``/stats``, read with
the query the join's answer names, compressed), since the control plane cannot reach the
admin socket on this host; the control plane reads them as it reads its own proxies'.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from meshpilot.hosts.identity import XDS_CLIENT_SECRET, HostFiles
from meshpilot.hosts.pods import HostPods
from meshpilot.hosts.probe import Readiness
from meshpilot.mesh.model import OUTBOUND_PROXY_PORT, InboundPort, ProxyNode
from meshpilot.mesh.protocols import port_protocol
from meshpilot.proxy.admin_socket import remove_socket_dir
from meshpilot.proxy.bootstrap import XDS_CLUSTER, bootstrap
from meshpilot.proxy.envoy import EnvoyError, EnvoyProcess

log = logging.getLogger(__name__)

HOSTS_API = "/apis/meshpilot.io/v1/hosts"
OUTBOUND_ADDRESS = "127.0.0.1"
"""Where the sidecar's HTTP proxy listens: loopback, for the apps of this host only (on
the host's address, anyone on its network could call the mesh as this host)."""
TLS_SOCKET = "envoy.transport_sockets.tls"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
GATEWAY_NAME = "istio-eastwestgateway"
GATEWAY_NAMESPACE = "istio-system"
WATCH_TIMEOUT = 20.0
"""How long the agent waits for a held watch's answer (the control plane holds it 10 s)."""
WATCH_CONNECT = 3.0
"""How long connecting for a watch may take before the next replica is tried (a replica
whose host is gone answers nothing at all)."""
WATCH_RETRY = 0.25
"""How soon a broken watch is tried again: the time a control plane back up may wait."""


def gateway_node(node_id: str, address: str) -> ProxyNode:
    """The east-west gateway a joined host runs, as it declares itself: the identity its
    xDS token was issued for (``server.host_gateways.identity``)."""
    return ProxyNode(id=node_id, kind="gateway", namespace=GATEWAY_NAMESPACE, ip=address,
                     workload=GATEWAY_NAME, name=GATEWAY_NAME,
                     labels={"istio": "eastwestgateway", "app": GATEWAY_NAME})


def xds_health_check() -> dict[str, Any]:
    """A replica's xDS port is alive while a connection to it succeeds, checked each
    second (also while no request went through: Envoy's ``no_traffic_interval`` is 60 s
    by default)."""
    return {"timeout": "1s", "interval": "1s", "no_traffic_interval": "1s",
            "unhealthy_threshold": 1, "healthy_threshold": 1, "tcp_health_check": {}}


class JoinFailed(RuntimeError):
    """The control plane refused the join, or could not be reached; says why."""


@dataclass(frozen=True)
class AgentOptions:
    server: str  # https://ADDR:PORT, the control plane's API
    token: str
    group: str  # NS/NAME
    address: str  # this host's address, where the mesh reaches it
    ca_file: Path  # the control plane's roots, to verify it
    state_dir: Path
    app_ports: Mapping[str, int] = field(default_factory=dict)  # group port name -> app port
    outbound_port: int = OUTBOUND_PROXY_PORT
    node_name: str = ""  # the node this host is, for pods placed on it ("": none run here)
    pod_addresses: str = ""  # this host's addresses for those pods (CIDR; default: address)
    east_west_gateway: bool = False  # run this host's network's east-west gateway here


def _address(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _san_type(server: str) -> str:
    try:
        ipaddress.ip_address(server)
    except ValueError:
        return "DNS"
    return "IP_ADDRESS"


class HostAgent:
    """One joined host: :meth:`join`, then :meth:`run` until :meth:`stop`."""

    def __init__(self, options: AgentOptions) -> None:
        if not options.server.startswith("https://"):
            raise JoinFailed(f"--server {options.server} is not https://: a host joins over "
                             "TLS only (start the control plane with `up --listen ADDR`)")
        self.options = options
        self.files = HostFiles(options.state_dir / "identity")
        try:
            self._tls = ssl.create_default_context(cafile=str(options.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise JoinFailed(f"--ca-file {options.ca_file}: not the control plane's roots "
                             f"(its api-ca.pem): {exc}") from None
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set to report before the round's time (the watch saw a change)."""
        self._watch_thread: threading.Thread | None = None
        self.joined: dict[str, Any] = {}
        self.sidecar: EnvoyProcess | None = None
        self.gateway: EnvoyProcess | None = None
        """This host's network's east-west gateway (``--east-west-gateway``), if run."""
        self.pods: HostPods | None = None
        self._pods_thread: threading.Thread | None = None
        self.servers: list[str] = [options.server]
        """The API URLs of the replicas to try, the one that answered last first."""

    # --- join ----------------------------------------------------------------------
    def join(self) -> dict[str, Any]:
        """Make the key and CSR, join, write the certificate; the control plane's answer."""
        csr = self.files.new_key(0)
        answer = self._post("join", {
            "token": self.options.token, "group": self.options.group,
            "address": self.options.address, "csr": csr.decode(),
            "keyFile": str(self.files.key_of(0))})
        self.files.save(0, answer["certificateChain"].encode(), answer["roots"].encode())
        self.joined = answer
        self._learn(answer)
        return answer

    def _learn(self, answer: dict[str, Any]) -> None:
        """Take the live replicas an answer names: the leader first (it judges the hosts'
        health and reads their counters, so reports go straight to it), else the current
        server stays first."""
        replicas = [r for r in answer.get("replicas") or []
                    if isinstance(r, dict) and r.get("api")]
        apis = [str(r["api"]).rstrip("/") for r in replicas]
        if not apis:
            return
        leaders = [str(r["api"]).rstrip("/") for r in replicas if r.get("leading") is True]
        first = leaders[0] if leaders else self.servers[0]
        if first != self.servers[0]:
            log.warning("reporting to %s, the leading control plane", first)
        self.servers = [first, *(a for a in [self.servers[0], *apis] if a != first)]
        self.servers = list(dict.fromkeys(self.servers))

    def xds_servers(self) -> list[str]:
        """host:port of every replica's mutual-TLS xDS, the joined one's first."""
        out = [str(self.joined["xds"])]
        for replica in self.joined.get("replicas") or []:
            xds = str(replica.get("xds") or "")
            if xds and xds not in out:
                out.append(xds)
        return out

    def _post(self, action: str, body: dict[str, Any], timeout: float | httpx.Timeout = 10.0
              ) -> dict[str, Any]:
        """POST to the replica that answered last, else to each other one in turn."""
        causes = []
        for server in list(self.servers):
            try:
                response = httpx.post(f"{server}{HOSTS_API}/{action}", json=body,
                                      verify=self._tls, timeout=timeout, trust_env=False)
            except httpx.HTTPError as exc:
                causes.append(f"{server}: {exc or type(exc).__name__}")
                continue
            if server != self.servers[0]:
                log.warning("control plane %s answered; %s did not", server, self.servers[0])
                self.servers = [server, *(s for s in self.servers if s != server)]
            return self._answer(action, response)
        raise JoinFailed("no control plane answered: " + "; ".join(causes))

    def _answer(self, action: str, response: httpx.Response) -> dict[str, Any]:
        payload = response.json() if response.content else {}
        if response.status_code != 200:
            codes = ", ".join(d.get("code", "") for d in payload.get("diagnostics") or [])
            raise JoinFailed(f"{action} refused ({response.status_code}"
                             f"{' ' + codes if codes else ''}): {payload.get('message', '')}")
        return dict(payload)

    # --- the sidecar -----------------------------------------------------------------
    def node(self) -> ProxyNode:
        joined = self.joined
        inbound = []
        for name, port in sorted(dict(joined["ports"]).items()):
            app_port = self.options.app_ports.get(name)
            if app_port is None:
                raise JoinFailed(f"the group's port {name} ({port}) has no --app-port "
                                 f"{name}=PORT: where does the app on this host serve it?")
            inbound.append(InboundPort(container_port=int(port), app_port=app_port, name=name,
                                       protocol=port_protocol(name)))
        return ProxyNode(
            id=joined["nodeId"], kind="sidecar", namespace=joined["namespace"],
            ip=self.options.address, workload=joined["entry"], name=joined["entry"],
            service_account=joined["serviceAccount"], labels=dict(joined["labels"]),
            inbound=tuple(inbound), outbound_port=self.options.outbound_port,
            outbound_ip=OUTBOUND_ADDRESS, locality=str(joined.get("locality") or ""))

    def bootstrap(self) -> dict[str, Any]:
        """The sidecar's bootstrap: xDS at every replica's mutual-TLS port, presenting
        this host's certificate and verifying the server's address against the roots.

        The replica it joined comes first (priority 0), each other one after it; Envoy
        checks every one by connecting each second, so when the stream's replica dies
        the reconnection goes to the first one still alive, and back once the first
        answers again (Envoy's priority failover)."""
        return self.secured(self.node(), self.joined["xdsToken"])

    def secured(self, node: ProxyNode, xds_token: str) -> dict[str, Any]:
        """A bootstrap for ``node`` (this host's sidecar or a pod's) whose xDS is every
        replica's mutual-TLS port, presenting this host's certificate."""
        servers = [_address(x) for x in self.xds_servers()]
        doc = bootstrap(node, xds_host=servers[0][0], xds_port=servers[0][1],
                        xds_token=xds_token)
        for cluster in doc["static_resources"]["clusters"]:
            if cluster["name"] == XDS_CLUSTER:
                cluster["load_assignment"]["endpoints"] = [
                    {"priority": n, "lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": host, "port_value": port}}}}]}
                    for n, (host, port) in enumerate(servers)]
                cluster["transport_socket"] = self._xds_tls(
                    sorted({host for host, _ in servers}))
                if len(servers) > 1:
                    cluster["health_checks"] = [xds_health_check()]
        return doc

    def _xds_tls(self, servers: list[str]) -> dict[str, Any]:
        """The client certificate comes from the SDS file the agent rewrites on renewal
        (Envoy watches its directory); the roots and the server's name are fixed."""
        return {"name": TLS_SOCKET, "typed_config": {
            "@type": UPSTREAM_TLS,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [{
                    "name": XDS_CLIENT_SECRET,
                    "sds_config": {"resource_api_version": "V3", "path_config_source": {
                        "path": str(self.files.sds),
                        "watched_directory": {"path": str(self.files.directory)}}}}],
                "validation_context": {
                    "trusted_ca": {"filename": str(self.files.roots)},
                    "match_typed_subject_alt_names": [{
                        "san_type": _san_type(server), "matcher": {"exact": server}}
                        for server in servers]}}}}

    def take_token(self, answer: Mapping[str, Any]) -> bool:
        """Take the sidecar's xDS token a report answers, as the control plane issues it
        now: a different one (the control plane was upgraded to another token binding,
        or its key changed) would have the sidecar refused at its next stream until the
        host joined again, so the sidecar restarts with a bootstrap that presents it, as
        a control plane's own pod whose bootstrap changed is restarted. True if taken."""
        token = str(answer.get("xdsToken") or "")
        if not token or not self.joined or token == self.joined.get("xdsToken"):
            return False
        self.joined["xdsToken"] = token
        sidecar = self.sidecar
        if sidecar is not None:
            log.warning("the control plane issued this host's sidecar another xDS token: "
                        "restarting the sidecar with it")
            sidecar.stop(grace=2.0)
            sidecar.use_bootstrap(self.bootstrap())
            try:
                sidecar.start()
            except EnvoyError as exc:  # reported not ready until the host is restarted
                log.error("the sidecar did not start again with its new xDS token: %s", exc)
        return True

    def start_sidecar(self) -> EnvoyProcess:
        self.sidecar = EnvoyProcess(self.bootstrap(), name=f"host-{self.joined['entry']}",
                                    work_dir=self.options.state_dir / "sidecar")
        return self.sidecar.start()

    # --- the network's east-west gateway ----------------------------------------------
    def start_gateway(self) -> EnvoyProcess | None:
        """Run the east-west gateway of this host's network at its address (port 15443,
        Istio's), configured by the control plane over this host's mutual-TLS xDS like
        the sidecar: it passes mutual-TLS connections from other networks, unopened, to
        the workloads of this network (see :mod:`meshpilot.server.host_gateways`)."""
        if not self.options.east_west_gateway:
            return None
        answer = self._post("gateway", {
            "namespace": self.joined["namespace"], "entry": self.joined["entry"],
            "hostToken": self.joined["hostToken"]})
        node = gateway_node(str(answer["nodeId"]), self.options.address)
        self.gateway = EnvoyProcess(self.secured(node, str(answer["xdsToken"])),
                                    name=f"gateway-{self.joined['entry']}",
                                    work_dir=self.options.state_dir / "gateway")
        return self.gateway.start()

    # --- pods placed on this host's node ------------------------------------------------
    def start_pods(self) -> HostPods | None:
        """Run the pods placed on ``--node-name`` (nothing without one), synced each
        report period and at once when one changes."""
        if not self.options.node_name:
            return None
        self.pods = HostPods(
            node=self.options.node_name, address=self.options.address,
            pod_addresses=self.options.pod_addresses or f"{self.options.address}/32",
            state_dir=self.options.state_dir, post=self._post, secure=self.secured,
            credential={"namespace": self.joined["namespace"], "entry": self.joined["entry"],
                        "hostToken": self.joined["hostToken"]},
            stats_query=self.joined.get("statsQuery"))
        self._pods_thread = threading.Thread(target=self._sync_pods, name="host-pods",
                                             daemon=True)
        self._pods_thread.start()
        return self.pods

    def _sync_pods(self) -> None:
        pods = self.pods
        assert pods is not None
        every = float(self.joined.get("reportSeconds") or 2.0)
        while not self._stop.is_set():
            try:
                pods.sync()
            except JoinFailed as exc:
                log.warning("pods not synced: %s", exc)
            except Exception:  # the next round tries again
                log.exception("pods not synced")
            pods.changed.wait(every)

    # --- the watch -------------------------------------------------------------------
    def start_watch(self) -> threading.Thread:
        """Hold the control plane's watch open, in a thread, until :meth:`stop`."""
        self._watch_thread = threading.Thread(target=self._watch, name="host-watch",
                                              daemon=True)
        self._watch_thread.start()
        return self._watch_thread

    def _watch(self) -> None:
        """Ask for the epoch again and again; sync at once when it changes or comes back
        after a broken connection. Ends on stop, or when the control plane refuses this
        host (the report loop says why) or has no watch (an older one: rounds only)."""
        held, broken = "", False
        while not self._stop.is_set():
            try:
                answer = self._post("watch", {
                    "namespace": self.joined["namespace"], "entry": self.joined["entry"],
                    "hostToken": self.joined["hostToken"], "node": self.options.node_name,
                    "since": held}, timeout=httpx.Timeout(WATCH_TIMEOUT, connect=WATCH_CONNECT))
            except JoinFailed as exc:
                if "(403" in str(exc) or "(404" in str(exc) or "(405" in str(exc):
                    log.warning("no watch: %s", exc)
                    return
                broken = True
                self._stop.wait(WATCH_RETRY)
                continue
            self._learn(answer)
            epoch = str(answer.get("epoch") or "")
            if broken or (held and epoch != held):
                log.warning("control plane changed (%s): syncing now",
                            "back" if broken else "new epoch")
                self.sync_now()
            held, broken = epoch, False

    def sync_now(self) -> None:
        """Report and sync the pods without waiting for the round."""
        self._wake.set()
        if self.pods is not None:
            self.pods.changed.set()

    def _pause(self, seconds: float) -> None:
        """Wait until the next round, :meth:`sync_now` or :meth:`stop`."""
        self._wake.wait(seconds)
        self._wake.clear()

    # --- reports ---------------------------------------------------------------------
    def renew(self) -> None:
        """A new key and certificate (the next generation); the control plane serves the
        sidecar the new chain with the new key's file, and the xDS client certificate
        follows through the SDS file."""
        generation = self.files.generation + 1
        csr = self.files.new_key(generation)
        answer = self._post("renew", {
            "namespace": self.joined["namespace"], "entry": self.joined["entry"],
            "hostToken": self.joined["hostToken"], "csr": csr.decode(),
            "keyFile": str(self.files.key_of(generation))})
        self.files.save(generation, answer["certificateChain"].encode(),
                        answer["roots"].encode())
        log.warning("certificate renewed (generation %d)", generation)

    def _renew_if_due(self) -> None:
        if datetime.now(UTC) < self.files.renew_at():
            return
        try:
            self.renew()
        except JoinFailed as exc:  # the current one is still valid: try again next round
            log.warning("certificate renewal failed: %s", exc)

    def run(self) -> int:
        """Probe, report and renew until stopped; 0 on stop, 1 when the control plane no
        longer knows this host (its entry was removed: join again)."""
        readiness = Readiness(self.joined.get("probe"), self.options.address)
        every = float(self.joined.get("reportSeconds") or 2.0)
        started = time.monotonic()
        next_probe = started + readiness.initial_delay
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_probe:
                readiness.step()
                next_probe = now + readiness.period
            self._renew_if_due()
            running = self.sidecar is not None and self.sidecar.running
            try:
                answer = self._post("report", {
                    "namespace": self.joined["namespace"], "entry": self.joined["entry"],
                    "hostToken": self.joined["hostToken"],
                    "ready": readiness.ready and running, **self._stats()}, timeout=every)
                self._learn(answer)
                self.take_token(answer)
            except JoinFailed as exc:
                if "(403" in str(exc):
                    log.error("%s; stopping", exc)
                    return 1
                log.warning("report not delivered: %s", exc)
            self._pause(min(every, max(0.1, next_probe - time.monotonic())))
        return 0

    def _stats(self) -> dict[str, Any]:
        """The sidecar's counters for the report (none if it is not up, or no query was
        named): ``stats`` zlib-compressed and base64, and the sidecar's process as
        ``epoch`` (its counters start again from zero when it is another)."""
        query = self.joined.get("statsQuery")
        sidecar = self.sidecar
        if not query or sidecar is None or not sidecar.running or sidecar.pid is None:
            return {}
        try:
            body = sidecar.admin.stats_bytes(dict(query))
        except Exception as exc:  # the report goes without them
            log.warning("sidecar stats not read: %s", exc)
            return {}
        return {"stats": base64.b64encode(zlib.compress(body)).decode(),
                "epoch": sidecar.pid}

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()  # the watch thread (a daemon) is not waited for: its call may be held
        if self._pods_thread is not None:
            assert self.pods is not None
            self.pods.changed.set()
            self._pods_thread.join(timeout=10)
            self.pods.stop()
        for envoy in (self.gateway, self.sidecar):
            if envoy is not None:
                envoy.stop(grace=2.0)
                remove_socket_dir(envoy.work_dir)  # its admin socket's directory
