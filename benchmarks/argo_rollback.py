"""Argo Rollouts rollback speed: a Rollout whose AnalysisTemplate fails at its 10 % step,
timed and counted as ``rollback.py`` does for Flagger Canaries.

Starts the real control plane and a real Prometheus scraping the mesh's telemetry every
second (found through the control plane's ``/http_sd``), applies Argo's
``examples/istio/istio-subset-split.yaml`` objects (Service ``myapp``, VirtualService
``myapp-vsvc`` whose route ``primary`` splits between the DestinationRule
``myapp-destrule``'s subsets ``stable`` and ``canary``), an AnalysisTemplate
``success-rate`` shaped like Argo's ``docs/features/analysis.md`` one (the canary
revision's share of non-5xx ``istio_requests_total`` over ``--window``, measured every
``--interval`` ``--count`` times, ``successCondition: len(result) == 0 || result[0] >=
0.95`` (passing with no sample yet, or NaN: no request in the window), failureLimit
0) and a Rollout (demo app v1, 2 replicas, steps ``setWeight: 10``,
``analysis`` with that template and the canary's hash as argument, ``setWeight: 50``,
``pause: {duration: 2s}``). Once v1 is Healthy it drives a steady open-loop load
(``--rate``, default 100 req/s) through the mesh proxy, recording every request's due
time, status and X-Version (``rollback.py``'s ``OpenLoop``). Then:

  (1) bad revision: v2 with ``--error-rate 0.5``. t_first_fail = due time of the first
      5xx answered by v2; t_back = due time of the first request after the last v2
      answer (the Rollout must be aborted, Degraded). time-to-rollback = t_back -
      t_first_fail; failed share = failed / all requests due from the apply until
      t_back + --tail seconds.
  (2) baseline, same run: a healthy v3 (no injected errors), through its analysis to
      Healthy; failed share of all requests from the apply until Healthy + --tail s.

``--fail-fast 99`` annotates the Rollout with meshpilot's opt-in extension
(``meshpilot.io/fail-fast-min-success-rate``): the canary is also judged on its live
counters between measurements.

Run:  .venv/bin/python benchmarks/argo_rollback.py [--rate 100] [--interval 1s] [--fail-fast 99]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from harness import ControlPlane, stop_process
from rollback import OpenLoop, Rec, failed

from meshpilot.proxy.ports import free_port

ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts/myapp"
RUNS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/analysisruns"
TARGET_SECONDS = 5.0
BOUNDED_WAIT_S = 30.0


class Prometheus:
    """A real ``prometheus`` on loopback scraping ``http_sd``'s targets every second."""

    def __init__(self, tmp: Path, http_sd: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (Debian package prometheus)")
        port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "meshpilot", "scrape_interval": "1s",
                                "http_sd_configs": [{"url": http_sd,
                                                     "refresh_interval": "5s"}]}]}))
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"], stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=5)
        self._wait('up{job="meshpilot"} == 1', "scraping the mesh")

    def _wait(self, promql: str, what: str) -> None:
        deadline = time.monotonic() + BOUNDED_WAIT_S
        while time.monotonic() < deadline:
            try:
                r = self.http.get("/api/v1/query", params={"query": promql})
                if r.status_code == 200 and r.json()["data"]["result"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not {what} within {BOUNDED_WAIT_S:g} s")

    def stop(self) -> None:
        self.http.close()
        stop_process(self.proc)
        self.log.close()


# --- the objects ------------------------------------------------------------------------


def _container(version: str, error_rate: float) -> dict[str, Any]:
    args = ["--version", version] + (["--error-rate", f"{error_rate:g}"] if error_rate else [])
    return {"name": "app", "command": [sys.executable, "-m", "meshpilot.demoapp"],
            "args": args, "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                               "periodSeconds": 1}}


def routing_objects(ns: str) -> list[dict[str, Any]]:
    meta = {"namespace": ns}
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp", **meta},
         "spec": {"selector": {"app": "myapp"},
                  "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
         "metadata": {"name": "myapp-vsvc", **meta},
         "spec": {"hosts": ["myapp"], "http": [{"name": "primary", "route": [
             {"destination": {"host": "myapp", "subset": "stable"}, "weight": 100},
             {"destination": {"host": "myapp", "subset": "canary"}, "weight": 0}]}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "myapp-destrule", **meta},
         "spec": {"host": "myapp", "subsets": [{"name": "stable", "labels": {"app": "myapp"}},
                                               {"name": "canary", "labels": {"app": "myapp"}}]}},
    ]


def analysis_template(ns: str, prometheus: str, a: argparse.Namespace) -> dict[str, Any]:
    workload = 'destination_workload="myapp-{{args.canary-hash}}"'
    query = (f'sum(rate(istio_requests_total{{{workload}, response_code!~"5.*"}}'
             f'[{a.window}])) / sum(rate(istio_requests_total{{{workload}}}[{a.window}]))')
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "success-rate", "namespace": ns},
            "spec": {"args": [{"name": "canary-hash"}], "metrics": [{
                "name": "success-rate", "interval": a.interval, "count": a.count,
                "failureLimit": 0,
                "successCondition": "len(result) == 0 || isNaN(result[0]) || "
                                    "result[0] >= 0.95",
                "provider": {"prometheus": {"address": prometheus, "query": query}}}]}}


def rollout(ns: str, version: str, error_rate: float = 0.0,
            fail_fast: float | None = None) -> dict[str, Any]:
    """``fail_fast``: meshpilot's opt-in fail-fast, the success rate (%) the canary is
    held to between measurements (None: off, as Argo)."""
    annotations = ({"meshpilot.io/fail-fast-min-success-rate": f"{fail_fast:g}"}
                   if fail_fast is not None else {})
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "myapp", "namespace": ns, "annotations": annotations},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "myapp"}},
                     "template": {"metadata": {"labels": {"app": "myapp", "version": version}},
                                  "spec": {"containers": [_container(version, error_rate)]}},
                     "strategy": {"canary": {
                         "abortScaleDownDelaySeconds": 5,
                         "trafficRouting": {"istio": {
                             "virtualService": {"name": "myapp-vsvc", "routes": ["primary"]},
                             "destinationRule": {"name": "myapp-destrule",
                                                 "canarySubsetName": "canary",
                                                 "stableSubsetName": "stable"}}},
                         "steps": [{"setWeight": 10},
                                   {"analysis": {"templates": [{"templateName": "success-rate"}],
                                                 "args": [{"name": "canary-hash", "valueFrom": {
                                                     "podTemplateHashValue": "Latest"}}]}},
                                   {"setWeight": 50}, {"pause": {"duration": "2s"}}]}}}}


def apply(cp: ControlPlane, *bodies: dict[str, Any]) -> None:
    cp.apply("---\n".join(yaml.safe_dump(b, sort_keys=False) for b in bodies))


# --- following the Rollout ----------------------------------------------------------------


@dataclass
class Poll:
    t: float
    phase: str
    abort: bool
    weight: int


def follow(cp: ControlPlane, ns: str, done: Callable[[dict[str, Any]], bool],
           timeout: float) -> tuple[list[Poll], dict[str, Any]]:
    """Poll the Rollout's status every 0.1 s until ``done(status)``; the polls and it."""
    polls: list[Poll] = []
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = cp.api.get(ROLLOUT.format(ns=ns)).json().get("status") or {}
        weight = int((((st.get("canary") or {}).get("weights") or {}).get("canary")
                      or {}).get("weight") or 0)
        polls.append(Poll(time.monotonic(), str(st.get("phase")), bool(st.get("abort")),
                          weight))
        if done(st):
            return polls, st
        time.sleep(0.1)
    raise RuntimeError(f"Rollout not done within {timeout:g} s: {st.get('phase')} "
                       f"{st.get('message')}")


def last_run(cp: ControlPlane, ns: str, pod_hash: str) -> dict[str, Any]:
    runs = [r for r in cp.api.get(RUNS.format(ns=ns)).json()["items"]
            if (r["metadata"].get("labels") or {}).get("rollouts-pod-template-hash") == pod_hash]
    return runs[-1] if runs else {}


# --- the measurement ----------------------------------------------------------------------


@dataclass
class Bad:
    t_apply: float
    t_first_v2: float | None
    t_first_fail: float | None
    t_abort_seen: float | None
    t_last_v2: float | None
    t_back: float
    window: list[Rec]
    after: list[Rec]
    v2: list[Rec]
    weight: int
    message: str
    run: dict[str, Any]


def bad_revision(cp: ControlPlane, ns: str, load: OpenLoop, a: argparse.Namespace) -> Bad:
    t_apply = time.monotonic()
    apply(cp, rollout(ns, "v2", a.error_rate, a.fail_fast))
    polls, st = follow(cp, ns, lambda s: bool(s.get("abort")) and s.get("phase") == "Degraded",
                       a.timeout)
    t_abort = next((p.t for p in polls if p.abort), None)
    time.sleep(a.tail + 2.0)
    recs = [r for r in load.snapshot() if r.sched >= t_apply]
    v2 = [r for r in recs if r.version == "v2"]
    v2_fail = [r for r in v2 if r.status >= 500]
    t_last_v2 = v2[-1].sched if v2 else None
    t_back = t_abort or t_apply
    if t_last_v2 is not None:
        later = [r for r in recs if r.sched > t_last_v2]
        t_back = later[0].sched if later else t_last_v2 + 1 / a.rate
    return Bad(t_apply, v2[0].sched if v2 else None, v2_fail[0].sched if v2_fail else None,
               t_abort, t_last_v2, t_back,
               [r for r in recs if r.sched <= t_back + a.tail],
               [r for r in recs if r.sched >= t_back], v2, max(p.weight for p in polls),
               str(st.get("message")), last_run(cp, ns, str(st.get("currentPodHash"))))


def healthy_revision(cp: ControlPlane, ns: str, load: OpenLoop,
                     a: argparse.Namespace) -> dict[str, Any]:
    time.sleep(a.settle)
    t_apply = time.monotonic()
    apply(cp, rollout(ns, "v3", fail_fast=a.fail_fast))
    first = cp.api.get(ROLLOUT.format(ns=ns)).json().get("status") or {}
    old, aborted = first.get("stableRS"), first.get("currentPodHash")
    polls, st = follow(cp, ns, lambda s: s.get("currentPodHash") not in (aborted, old) and (
        bool(s.get("abort")) or (s.get("phase") == "Healthy"
        and s.get("stableRS") not in (None, old))), a.timeout)
    if st.get("abort"):
        run = last_run(cp, ns, str(st.get("currentPodHash")))
        bad = Counter((r.version, r.status) for r in load.snapshot()
                      if r.sched >= t_apply and failed(r))
        raise RuntimeError(f"the healthy revision was aborted: {st.get('message')}; its run "
                           f"{(run.get('status') or {}).get('metricResults')}; failed "
                           f"requests (version, status): {dict(bad)}")
    t_done = polls[-1].t
    time.sleep(a.tail + 0.5)
    recs = [r for r in load.snapshot() if t_apply <= r.sched <= t_done + a.tail]
    return {"seconds": t_done - t_apply, "n": len(recs), "fail": sum(failed(r) for r in recs),
            "v3": sum(r.version == "v3" for r in recs), "weight": max(p.weight for p in polls),
            "run": last_run(cp, ns, str(st.get("stableRS")))}


def report(bad: Bad, healthy: dict[str, Any] | None, load: OpenLoop,
           a: argparse.Namespace) -> None:
    def rel(t: float | None) -> str:
        return "n/a" if t is None else f"+{t - bad.t_apply:6.2f} s"

    fails = [r for r in bad.window if failed(r)]
    pct = 100.0 * len(fails) / max(1, len(bad.window))
    ttr = bad.t_back - (bad.t_first_fail if bad.t_first_fail is not None else bad.t_apply)
    wrong_after = [r for r in bad.after if r.version != "v1" or failed(r)]
    measurements = ((bad.run.get("status") or {}).get("metricResults") or [{}])[0].get(
        "measurements") or []
    print()
    print(f"Rollout: setWeight 10, analysis success-rate (interval {a.interval}, count "
          f"{a.count}, window {a.window}, >= 0.95, failureLimit 0), setWeight 50; demo app "
          f"2 replicas; Prometheus scraping every 1 s; open-loop {a.rate:g} req/s; "
          + (f"meshpilot fail-fast at {a.fail_fast:g} %." if a.fail_fast is not None
             else "no fail-fast (as Argo)."))
    print(f"(1) bad revision v2 (--error-rate {a.error_rate:g}), times from the apply:")
    print(f"  first request answered by v2      {rel(bad.t_first_v2)}")
    print(f"  first failed request (v2, 5xx)    {rel(bad.t_first_fail)}   = t_first_fail")
    print(f"  Rollout aborted (status poll)     {rel(bad.t_abort_seen)}")
    print(f"  last request answered by v2       {rel(bad.t_last_v2)}")
    print(f"  all requests on stable from       {rel(bad.t_back)}   = t_back")
    print(f"  TIME TO ROLLBACK: {ttr:.2f} s   [target < {TARGET_SECONDS:g} s: "
          f"{'met' if ttr < TARGET_SECONDS else 'MISSED'}]")
    print(f"  FAILED REQUESTS: {len(fails)} of {len(bad.window)} = {pct:.2f} % "
          f"(apply .. t_back + {a.tail:g} s); answered by v1: "
          f"{sum(r.version == 'v1' for r in fails)}, transport errors: "
          f"{sum(r.status == 0 for r in fails)}")
    print(f"  v2 answered {len(bad.v2)} ({sum(r.status >= 500 for r in bad.v2)} failed); "
          f"canary weight reached {bad.weight} %; after t_back {len(bad.after)} requests, "
          f"{len(wrong_after)} not a 200 from v1")
    print(f"  AnalysisRun {bad.run.get('metadata', {}).get('name')}: "
          f"{(bad.run.get('status') or {}).get('phase')}, measurements "
          f"{[m.get('value') for m in measurements]}")
    print(f"  Rollout: {bad.message}")
    if healthy is not None:
        hp = 100.0 * healthy["fail"] / max(1, healthy["n"])
        print(f"(2) baseline, same run: healthy v3 Healthy {healthy['seconds']:.1f} s after "
              f"the apply (weight reached {healthy['weight']} %, AnalysisRun "
              f"{(healthy['run'].get('status') or {}).get('phase')}): failed "
              f"{healthy['fail']} of {healthy['n']} = {hp:.2f} % ({healthy['v3']} by v3)")
    recs = load.snapshot()
    span = (recs[-1].sched - recs[0].sched) if len(recs) > 1 else 0.0
    print(f"Load generator: {len(recs)} requests at "
          f"{len(recs) / span if span else 0:.1f} req/s of {a.rate:g}; late: {load.late}. "
          f"Machine: {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="user req/s (default 100)")
    parser.add_argument("--interval", default="1s", help="measurement interval (1s)")
    parser.add_argument("--count", type=int, default=5, help="measurements of a run (5)")
    parser.add_argument("--window", default="5s", help="PromQL rate window (5s)")
    parser.add_argument("--error-rate", type=float, default=0.5)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--workers", type=int, default=8, help="load-generator threads")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--tail", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=90.0, help="per rollout, seconds")
    parser.add_argument("--skip-healthy", action="store_true", help="skip the baseline")
    parser.add_argument("--fail-fast", type=float, default=None, metavar="MIN",
                        help="opt in to meshpilot's fail-fast extension, holding the canary "
                             "to MIN %% success between measurements (default: off)")
    a = parser.parse_args(argv)
    if a.rate <= 0 or a.count < 1 or a.workers < 1 or not 0 < a.error_rate <= 1:
        parser.error("rate, count, workers must be positive; 0 < error-rate <= 1")
    ns = a.namespace
    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-argo-rollback-"))
    cp: ControlPlane | None = None
    prom: Prometheus | None = None
    load: OpenLoop | None = None
    try:
        cp = ControlPlane(tmp / "state")
        prom = Prometheus(tmp / "prometheus", cp.endpoints["metrics_http_sd"])
        apply(cp, *routing_objects(ns), analysis_template(ns, prom.url, a),
              rollout(ns, "v1", fail_fast=a.fail_fast))
        follow(cp, ns, lambda s: s.get("phase") == "Healthy", a.timeout)
        cp.converge()
        url = f"http://myapp.{ns}:8080/"
        load = OpenLoop(cp.endpoints["mesh_proxy"], url, a.rate, a.workers,
                        3 * a.timeout + 4 * (a.settle + a.tail) + 30)
        load.start()
        time.sleep(a.settle)
        bad = bad_revision(cp, ns, load, a)
        healthy = None if a.skip_healthy else healthy_revision(cp, ns, load, a)
        load.stop()
        report(bad, healthy, load, a)
        return 0 if bad.t_abort_seen is not None else 1
    finally:
        if load is not None:
            load.stop()
        if prom is not None:
            prom.stop()
        if cp is not None:
            cp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
