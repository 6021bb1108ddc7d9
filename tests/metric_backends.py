"""Real Graphite and InfluxDB servers for the metric provider tests, from Debian's
packages (``graphite-carbon``, ``graphite-web``, ``influxdb``; ``.ci/run`` installs
them), each in a temporary directory on loopback ports, stopped at the end of a
``with`` block.

- :class:`Graphite`: ``carbon-cache`` takes data points over its plaintext protocol and
  writes whisper files; graphite-web (:mod:`tests.graphite_web`) renders them, asking
  carbon's cache for points not yet on disk (carbonlink), as a deployment does.
- :class:`InfluxDB`: ``influxd`` 1.x with authentication on and one admin user.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from meshpilot.proxy.ports import PortWalk, free_port, wait_port
from tests.conftest import wait_for
from tests.processes import stop_process
from tests.tls_pairs import certificate, key_pem, pem

SYSTEM_PYTHON = "/usr/bin/python3"
"""Debian's Python, where graphite-web and Django are installed."""
GRAPHITE_USER, GRAPHITE_PASSWORD = "flagger", "graphite s3cret"
INFLUX_USER, INFLUX_PASSWORD = "admin", "influx s3cret"


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    stop_process(proc, grace=10.0)
    log.close()


class Graphite:
    """carbon-cache and graphite-web over one whisper directory under ``tmp``.

    ``url`` is graphite-web as it is, ``auth_url`` the same behind basic auth for
    :data:`GRAPHITE_USER` and :data:`GRAPHITE_PASSWORD`, ``tls_url`` over HTTPS with a
    certificate for 127.0.0.1 that no root vouches for."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        storage, conf = tmp / "storage", tmp / "conf"
        for d in (storage / "whisper", storage / "log" / "webapp", conf, tmp / "py"):
            d.mkdir(parents=True, exist_ok=True)
        walk = PortWalk()
        self.line_port, pickle_port, cache_port = (free_port(walk=walk) for _ in range(3))
        (conf / "carbon.conf").write_text(_carbon_conf(storage, conf, tmp / "pid",
                                                       self.line_port, pickle_port,
                                                       cache_port))
        # one point a second kept for an hour: a test's points each have their own slot
        (conf / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
        (tmp / "py" / "mp_graphite_settings.py").write_text(_web_settings(storage, conf,
                                                                            cache_port))
        cert, key = _self_signed(tmp)
        self._carbon_log = open(tmp / "carbon.log", "wb")  # noqa: SIM115 - closed in stop()
        self._web_log = open(tmp / "graphite-web.log", "wb")  # noqa: SIM115 - closed in stop()
        # Debian's Python runs both: nothing of the test run's environment (a virtualenv's
        # PYTHONPATH) may reach it
        self.carbon = subprocess.Popen(
            ["/usr/bin/carbon-cache", f"--config={conf / 'carbon.conf'}", "--nodaemon",
             "start"], stdout=self._carbon_log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp / "py"),
               "GRAPHITE_SETTINGS_MODULE": "mp_graphite_settings",
               "DJANGO_SETTINGS_MODULE": "graphite.settings",
               "MP_GRAPHITE_BASIC_AUTH": f"{GRAPHITE_USER}:{GRAPHITE_PASSWORD}",
               "MP_GRAPHITE_TLS_CERT": str(cert), "MP_GRAPHITE_TLS_KEY": str(key)}
        self.web = subprocess.Popen(
            [SYSTEM_PYTHON, str(Path(__file__).with_name("graphite_web.py"))],
            stdout=subprocess.PIPE, stderr=self._web_log, stdin=subprocess.DEVNULL, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.web.stdout is not None
        ports = self.web.stdout.readline().split()  # written once all listen
        if len(ports) != 3:
            raise AssertionError("graphite-web did not start:\n" + self.logs())
        self.url = f"http://127.0.0.1:{int(ports[0])}"
        self.auth_url = f"http://127.0.0.1:{int(ports[1])}"
        self.tls_url = f"https://127.0.0.1:{int(ports[2])}"
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=10)
        if not wait_port("127.0.0.1", self.line_port, timeout=30):
            raise AssertionError("carbon-cache did not start:\n" + self.logs())

    def __enter__(self) -> Graphite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        _stop(self.web, self._web_log)
        _stop(self.carbon, self._carbon_log)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in
                         (self.tmp / "carbon.log", self.tmp / "graphite-web.log"))

    def feed(self, points: list[tuple[str, float, int]]) -> None:
        """Send ``(metric path, value, unix time)`` points over carbon's plaintext
        protocol and wait until graphite-web renders the last one of each path."""
        lines = "".join(f"{path} {value} {ts}\n" for path, value, ts in points)
        with socket.create_connection(("127.0.0.1", self.line_port), timeout=5) as conn:
            conn.sendall(lines.encode())
        last = {path: (float(value), ts) for path, value, ts in points}
        for path, point in last.items():
            wait_for(lambda p=path, want=point: want in self._written(p), 20, interval=0.05,
                     message=f"graphite to render {path} {point}")

    def _written(self, path: str) -> list[tuple[float, int]]:
        """:meth:`points`, or none while carbon is still creating the path's whisper
        file (graphite-web then fails to read its header and answers 500)."""
        r = self.http.get("/render", params={"target": path, "from": "-1h",
                                             "format": "json"})
        if r.status_code == 500 and "Unable to read header" in r.text:
            return []
        return self.points(path)

    def points(self, path: str) -> list[tuple[float, int]]:
        """The non-null points of ``path`` over the last hour."""
        r = self.http.get("/render", params={"target": path, "from": "-1h",
                                             "format": "json"})
        assert r.status_code == 200, r.text
        return [(float(v), int(t)) for series in r.json() for v, t in series["datapoints"]
                if v is not None]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and the key (0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = tmp / "graphite.crt", tmp / "graphite.key"
    cert.write_bytes(pem(certificate("127.0.0.1", key)))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem(key))
    return cert, key_file


def _carbon_conf(storage: Path, conf: Path, pid: Path, line: int, pickle: int,
                 cache: int) -> str:
    return "\n".join([
        "[cache]",
        f"STORAGE_DIR = {storage}",
        f"LOCAL_DATA_DIR = {storage / 'whisper'}",
        f"WHITELISTS_DIR = {storage / 'lists'}",
        f"CONF_DIR = {conf}",
        f"LOG_DIR = {storage / 'log'}",
        f"PID_DIR = {pid}",
        "ENABLE_LOGROTATION = False",
        "USER =",
        "MAX_CACHE_SIZE = inf",
        "MAX_UPDATES_PER_SECOND = 10000",
        "MAX_CREATES_PER_MINUTE = inf",
        "ENABLE_TAGS = False",
        "ENABLE_UDP_LISTENER = False",
        "LINE_RECEIVER_INTERFACE = 127.0.0.1",
        f"LINE_RECEIVER_PORT = {line}",
        "PICKLE_RECEIVER_INTERFACE = 127.0.0.1",
        f"PICKLE_RECEIVER_PORT = {pickle}",
        "CACHE_QUERY_INTERFACE = 127.0.0.1",
        f"CACHE_QUERY_PORT = {cache}",
        "LOG_LISTENER_CONNECTIONS = False",
        "",
    ])


def _web_settings(storage: Path, conf: Path, cache_port: int) -> str:
    return "\n".join([
        "SECRET_KEY = 'graphite-web of the meshpilot tests'",
        "GRAPHITE_ROOT = '/usr/share/graphite-web'",
        "STATIC_ROOT = '/usr/share/graphite-web/static'",
        f"CONF_DIR = {str(conf)!r}",
        f"STORAGE_DIR = {str(storage)!r}",
        f"WHISPER_DIR = {str(storage / 'whisper')!r}",
        f"LOG_DIR = {str(storage / 'log' / 'webapp')!r}",
        f"INDEX_FILE = {str(storage / 'index')!r}",
        f"CARBONLINK_HOSTS = ['127.0.0.1:{cache_port}']",
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(storage / 'graphite.db')!r}}}}}",
        "LOG_ROTATION = False",
        "DEFAULT_XFILES_FACTOR = 0",
        "",
    ])


class InfluxDB:
    """``influxd`` with authentication on, its admin :data:`INFLUX_USER` made through
    the one request 1.x allows before any user exists, and ``database`` created."""

    def __init__(self, tmp: Path, database: str = "istio") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        walk = PortWalk()
        self.port, rpc_port = free_port(walk=walk), free_port(walk=walk)
        config = tmp / "influxdb.conf"
        config.write_text(_influx_conf(tmp, self.port, rpc_port))
        self._log = open(tmp / "influxd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["influxd", "-config", str(config)], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.tmp, self.database = tmp, database
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=10)
        try:
            if not wait_port("127.0.0.1", self.port, timeout=30):
                raise AssertionError("influxd did not start:\n" + self.log_text())
            self.statement(f"CREATE USER {INFLUX_USER} WITH PASSWORD "
                           f"'{INFLUX_PASSWORD}' WITH ALL PRIVILEGES", auth=False)
            self.statement(f'CREATE DATABASE "{database}"')
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> InfluxDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        _stop(self.proc, self._log)

    def log_text(self) -> str:
        return (self.tmp / "influxd.log").read_text(errors="replace")

    def _auth(self) -> dict[str, str]:
        pair = f"{INFLUX_USER}:{INFLUX_PASSWORD}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def statement(self, q: str, *, auth: bool = True, db: bool = False) -> dict[str, Any]:
        """``q`` run as the admin (or as nobody), in the database when ``db``."""
        params = {"db": self.database} if db else {}
        r = self.http.post("/query", params=params, data={"q": q},
                           headers=self._auth() if auth else {})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert "error" not in body["results"][0], body
        return body

    def write(self, lines: list[str]) -> None:
        """Points in line protocol, second precision, into the database."""
        r = self.http.post("/write", params={"db": self.database, "precision": "s"},
                           content="\n".join(lines).encode(), headers=self._auth())
        assert r.status_code == 204, r.text


def _influx_conf(tmp: Path, port: int, rpc_port: int) -> str:
    return "\n".join([
        "reporting-disabled = true",
        f'bind-address = "127.0.0.1:{rpc_port}"',
        "[meta]",
        f'  dir = "{tmp / "meta"}"',
        "[data]",
        f'  dir = "{tmp / "data"}"',
        f'  wal-dir = "{tmp / "wal"}"',
        "  query-log-enabled = false",
        "[http]",
        f'  bind-address = "127.0.0.1:{port}"',
        "  auth-enabled = true",
        "  log-enabled = false",
        "[monitor]",
        "  store-enabled = false",
        "[continuous_queries]",
        "  enabled = false",
        "[subscriber]",
        "  enabled = false",
        "",
    ])


def now() -> int:
    """The current unix second: points are written at real time, which the servers'
    relative ranges (``from=-1min``, ``now() - 1m``) are measured from."""
    return int(time.time())
