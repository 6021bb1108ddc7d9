"""The one client for Envoy's admin API, spoken over the proxy's admin Unix socket.

Every meshpilot Envoy has its admin on a Unix socket (0600, in a 0700 directory: see
:mod:`meshpilot.proxy.admin_socket`) rather than a loopback TCP port, because any local
user can connect to a loopback port and Envoy's admin has no authentication: it would let
them stop the proxy (``/quitquitquit``), drain it or change its runtime. Everything that
reads or drives a proxy (stats scraping, ``proxy-config``, readiness, drain, quit) goes
through this client.

Every call has a short timeout and ignores proxy environment variables (``trust_env=False``):
an ``HTTP_PROXY`` meant for an app must never capture the control plane's own admin calls.
Mutating endpoints (drain, healthcheck, quit) are POSTs, as Envoy requires.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Literal

import httpx

__all__ = ["AdminClient", "AdminError"]

StatsFormat = Literal["json", "text", "prometheus"]


class AdminError(RuntimeError):
    """The admin endpoint answered with an error status."""


BASE_URL = "http://envoy-admin"
"""The URL requests are made against: the host is only the ``Host`` header (Envoy's admin
ignores it); the connection goes to the socket."""


class AdminClient:
    """Envoy admin API on the Unix socket ``socket_path``.

    Connections are kept alive between calls, so a caller that reads one proxy
    repeatedly (the telemetry scraper) keeps one client per proxy.
    """

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 2.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self._client = httpx.Client(
            base_url=BASE_URL,
            transport=httpx.HTTPTransport(uds=self.socket_path),
            trust_env=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
        )

    # --- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdminClient({self.socket_path!r})"

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        resp = self._client.request(method, path, params=params)
        if resp.status_code not in ok:
            raise AdminError(f"{method} {path} on admin socket {self.socket_path} -> "
                             f"{resp.status_code}: {resp.text[:500]}")
        return resp

    def _get(self, path: str, params: dict[str, Any] | None = None,
             ok: tuple[int, ...] = (200,)) -> httpx.Response:
        return self._request("GET", path, params, ok)

    def _post(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self._request("POST", path, params)

    # --- server state --------------------------------------------------------------------
    def server_info(self) -> dict[str, Any]:
        """``/server_info``: version, state, uptime, command line options, node."""
        return self._get("/server_info").json()

    def state(self) -> str:
        """``LIVE``, ``PRE_INITIALIZING``, ``INITIALIZING``, ``DRAINING``."""
        return str(self.server_info().get("state", ""))

    def ready(self) -> bool:
        """``/ready`` answers 200 only when the server is LIVE; False if unreachable."""
        try:
            return self._get("/ready", ok=(200, 503)).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        """Whether the admin endpoint answers at all."""
        try:
            self._get("/server_info")
            return True
        except (httpx.HTTPError, AdminError):
            return False

    # --- config and runtime state --------------------------------------------------------
    def config_dump(
        self, resource: str | None = None, *, include_eds: bool = False,
        mask: str | None = None, name_regex: str | None = None,
    ) -> dict[str, Any]:
        """``/config_dump``; ``resource`` e.g. ``dynamic_active_clusters``,
        ``dynamic_listeners``, ``dynamic_route_configs``; ``include_eds`` adds endpoints."""
        params: dict[str, Any] = {}
        if resource:
            params["resource"] = resource
        if mask:
            params["mask"] = mask
        if name_regex:
            params["name_regex"] = name_regex
        if include_eds:
            params["include_eds"] = ""
        return self._get("/config_dump", params).json()

    def clusters(self) -> str:
        """``/clusters`` in text form: one ``cluster::host::stat::value`` per line."""
        return self._get("/clusters").text

    def clusters_json(self) -> dict[str, Any]:
        return self._get("/clusters", {"format": "json"}).json()

    def stats(
        self, filter: str | None = None, fmt: StatsFormat = "json", *,
        used_only: bool = False,
    ) -> Any:
        """``/stats``: a dict for ``json``, text for ``text`` and ``prometheus``.

        ``filter`` is a regular expression on the stat name (Envoy's RE2).
        """
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = filter
        if used_only:
            params["usedonly"] = ""
        if fmt == "prometheus":
            return self._get("/stats/prometheus", params).text
        if fmt == "json":
            params["format"] = "json"
            return self._get("/stats", params).json()
        return self._get("/stats", params).text

    def stats_bytes(self, params: Mapping[str, str]) -> bytes:
        """``/stats`` with ``params``, the body as it came: for a caller that parses it
        its own way (telemetry parses the JSON straight from the bytes)."""
        return self._get("/stats", dict(params)).content

    def stats_dict(self, filter: str | None = None) -> dict[str, Any]:
        """Counters and gauges as ``{name: value}`` (histograms left out)."""
        out: dict[str, Any] = {}
        for item in self.stats(filter, "json").get("stats", []):
            if "name" in item and "value" in item:
                out[item["name"]] = item["value"]
        return out

    def listeners(self) -> dict[str, Any]:
        """``/listeners?format=json``: ``{"listener_statuses": [{name, local_address}]}``
        (Envoy answers ``{}`` when there are no listeners)."""
        return self._get("/listeners", {"format": "json"}).json()

    # --- actions -------------------------------------------------------------------------
    def drain_listeners(
        self, graceful: bool = True, inbound_only: bool = False, skip_exit: bool = False,
    ) -> None:
        """``POST /drain_listeners``: with ``graceful`` listeners keep accepting for the
        drain time (``--drain-time-s``) while connections are told to close, then stop.
        ``skip_exit`` drains connections but never stops the listeners."""
        params: dict[str, Any] = {}
        if graceful:
            params["graceful"] = ""
        if inbound_only:
            params["inboundonly"] = ""
        if skip_exit:
            params["skip_exit"] = ""
        self._post("/drain_listeners", params)

    def healthcheck_fail(self) -> None:
        """``POST /healthcheck/fail``: fail health checks (and start draining HCM)."""
        self._post("/healthcheck/fail")

    def healthcheck_ok(self) -> None:
        self._post("/healthcheck/ok")

    def certs(self) -> dict[str, Any]:
        """``/certs``: the certificates the proxy holds (no keys), with their expiry."""
        return self._get("/certs").json()

    def set_log_level(self, level: str, logger: str | None = None) -> None:
        self._post("/logging", {logger or "level": level})

    def quit(self) -> None:
        """``POST /quitquitquit``: Envoy exits cleanly (no drain)."""
        with contextlib.suppress(httpx.HTTPError):  # it may hang up while exiting
            self._post("/quitquitquit")
