"""Sidecar memory (idle and under load) and what reading stats costs the control plane.

Run: ``.venv/bin/python benchmarks/telemetry.py [--rate 1000] [--seconds 15]``

Starts a control plane on a temporary state dir, one demo-app pod (app + sidecar),
reads the sidecar Envoy's VmRSS at idle, then drives ``--rate`` req/s (keep-alive
HTTP/1.1 from a few threads, straight to the sidecar's inbound listener) and reads
VmRSS again, the number of stats Envoy keeps, and the control plane's own scrape cost
(``/apis/meshpilot.io/v1/telemetry/cost``). Istio's published figure for comparison:
a sidecar uses about 40-60 MB (istio.io, "Performance and Scalability").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from harness import stop_process

from meshpilot.proxy.admin import AdminClient

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp-v1, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: myapp, version: v1}}
  template:
    metadata: {labels: {app: myapp, version: v1}}
    spec:
      containers:
      - name: app
        command: [PY, -m, meshpilot.demoapp]
        args: [--version, v1]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: myapp, namespace: default}
spec:
  selector: {app: myapp}
  ports: [{name: http, port: 8080, targetPort: http}]
"""


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sidecar_pid(state: Path, pod: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "envoy" in args and f"sidecars/{pod}.json" in args and str(state) in args:
                return int(proc.name)
    raise SystemExit(f"no sidecar process for {pod}")


def drive(host: str, port: int, rate: float, seconds: float, threads: int) -> tuple[int, int]:
    """Paced keep-alive GETs; returns (responses, errors)."""
    request = (b"GET / HTTP/1.1\r\nHost: myapp:8080\r\n\r\n")
    done, errors = [0], [0]
    lock = threading.Lock()
    per_thread = rate / threads
    deadline = time.monotonic() + seconds

    def worker() -> None:
        sock = socket.create_connection((host, port))
        f = sock.makefile("rb")
        next_at = time.monotonic()
        n = e = 0
        while time.monotonic() < deadline:
            next_at += 1.0 / per_thread
            try:
                sock.sendall(request)
                status = f.readline()
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)
                n += 1
                e += b" 200 " not in status
            except OSError:
                e += 1
                sock = socket.create_connection((host, port))
                f = sock.makefile("rb")
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        with lock:
            done[0] += n
            errors[0] += e

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return done[0], errors[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-telemetry-bench-"))
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    server = subprocess.Popen([sys.executable, "-m", "meshpilot.server", "--state-dir",
                               str(state)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (state / "endpoints.json").exists():
                break
            time.sleep(0.1)
        endpoints = json.loads((state / "endpoints.json").read_text())
        token = (state / "token").read_text().strip()
        api = httpx.Client(base_url=endpoints["api"], trust_env=False, timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
        text = DEPLOYMENT.replace("PY", sys.executable)
        r = api.post("/apis/meshpilot.io/v1/apply",
                     json={"sources": [{"file": "bench.yaml", "text": text}]})
        r.raise_for_status()
        for _ in range(300):
            if api.get("/apis/meshpilot.io/v1/readiness").json()["ready"]:
                break
            time.sleep(0.1)
        (pod,) = api.get("/api/v1/namespaces/default/pods").json()["items"]
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        admin = AdminClient(pod["status"]["sidecarAdminSocket"], timeout=10)
        pid = sidecar_pid(state, name)
        time.sleep(3)
        idle, idle_anon = rss_kb(pid), rss_kb(pid, "RssAnon")
        cost0 = api.get("/apis/meshpilot.io/v1/telemetry/cost").json()
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        done, errors = drive(ip, 8080, args.rate, args.seconds, args.threads)
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        loaded, loaded_anon = rss_kb(pid), rss_kb(pid, "RssAnon")
        cost1 = api.get("/apis/meshpilot.io/v1/telemetry/cost").json()
        with admin:
            stats = admin.stats(None, "text").count("\n")
            server_mem = admin.stats(r"^server\.memory_(allocated|heap_size)$",
                                     "text").strip().replace("\n", ", ")
        reads = cost1["proxiesRead"] - cost0["proxiesRead"]
        cpu = cost1["cpuSecondsTotal"] - cost0["cpuSecondsTotal"]
        print(f"sidecar VmRSS idle:            {idle / 1024:.1f} MB "
              f"(RssAnon {idle_anon / 1024:.1f} MB; the rest is the mapped Envoy binary)")
        print(f"sidecar VmRSS under load:      {loaded / 1024:.1f} MB "
              f"(peak {peak[0] / 1024:.1f} MB) at {done / elapsed:.0f} req/s "
              f"(target {args.rate:g}, {errors} errors, {done} requests); "
              f"RssAnon {loaded_anon / 1024:.1f} MB")
        print(f"Envoy stats kept:              {stats} ({server_mem})")
        print(f"scrape cost per proxy read:    {1000 * cpu / max(1, reads):.2f} ms CPU, "
              f"{cost1['bytesPerProxyRead']} bytes "
              f"({reads} reads of {cost1['lastTargets']} proxies, "
              f"last cycle {1000 * cost1['lastCycleSeconds']:.1f} ms wall)")
        print("Istio (published):             40-60 MB per sidecar")
    finally:
        stop_process(server, grace=30.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
