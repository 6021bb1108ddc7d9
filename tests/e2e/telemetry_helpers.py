"""Helpers for the telemetry end-to-end tests: /metrics parsing and a real Prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from meshpilot.proxy.ports import free_port, wait_port
from tests.conftest import wait_for
from tests.processes import stop_process

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m is not None, line
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        out.append((m.group("name"), labels, float(m.group("value"))))
    return out


def metric_sum(samples: list[tuple[str, dict[str, str], float]], name: str,
               **match: str) -> float:
    return sum(v for n, labels, v in samples
               if n == name and all(labels.get(k) == w for k, w in match.items()))


def fetch_metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    return parse_metrics(httpx.get(url, trust_env=False, timeout=10).text)


def send(client: httpx.Client, url: str, n: int, *, headers: dict[str, str] | None = None,
         workers: int = 4) -> dict[int, int]:
    """``n`` GETs over ``workers`` threads; returns the count per status code."""
    def one(_: int) -> int:
        return client.get(url, headers=headers or {}).status_code

    counts: dict[int, int] = {}
    with ThreadPoolExecutor(workers) as pool:
        for code in pool.map(one, range(n)):
            counts[code] = counts.get(code, 0) + 1
    return counts


class Prometheus:
    """A real ``prometheus`` scraping meshpilot every second (found through /http_sd);
    stopped at the end of a ``with`` block."""

    def __init__(self, tmp: Path, http_sd_url: str | None, rules: Path | None = None, *,
                 web_config: Path | None = None, https: bool = False,
                 auth: tuple[str, str] | None = None) -> None:
        """``web_config`` is Prometheus' own web configuration file (TLS, basic auth);
        ``https`` and ``auth`` say how this helper's client talks to it. No
        ``http_sd_url``: Prometheus scrapes nothing (for queries of constants)."""
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        config = tmp / "prometheus.yml"
        rule_files = f"rule_files: [{str(rules)!r}]\n" if rules else ""
        scrape = ("scrape_configs:\n"
                  "- job_name: meshpilot\n"
                  "  scrape_interval: 1s\n"
                  f"  http_sd_configs: [{{url: '{http_sd_url}', refresh_interval: 5s}}]\n"
                  ) if http_sd_url else ""
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n" + rule_files + scrape)
        web = [f"--web.config.file={web_config}"] if web_config else []
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", *web],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=10,
                                 verify=not https, auth=auth)
        if not wait_port("127.0.0.1", self.port, timeout=20):
            self.stop()
            raise AssertionError("prometheus did not start:\n" + self.log_text())
        try:  # the API answers 503 until the TSDB is open
            wait_for(lambda: self.http.get("/-/ready").status_code == 200, 30, interval=0.2,
                     message="prometheus to become ready")
        except AssertionError:
            self.stop()
            raise

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = self.http.get("/api/v1/query", params={"query": promql})
        assert r.status_code == 200, r.text
        return r.json()["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_target_up(self, timeout: float = 20.0) -> None:
        wait_for(lambda: self.scalar('up{job="meshpilot"}') == 1.0, timeout, interval=0.2,
                 message="prometheus to scrape meshpilot:\n" + self.log_text())

    def stop(self) -> None:
        self.http.close()
        stop_process(self.proc, grace=10.0)
        self.log.close()
