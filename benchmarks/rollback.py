"""Rollback speed: from a bad revision's first failed request to all traffic back on the
primary, and the share of user requests that failed meanwhile.

Starts the real control plane (``python -m meshpilot.server --state-dir <tmp>``), applies
a Deployment ``myapp`` (demo app v1, 2 replicas) and a Flagger Canary over it (analysis
interval 1 s, threshold 1, stepWeight 10, maxWeight 50, request-success-rate >= 99 % over
a 5 s window), waits until the Canary is Initialized, and drives a steady open-loop load
(100 req/s) through the mesh proxy to ``http://myapp.<ns>:8080/``, recording the scheduled
send time, status and X-Version of every request. Then:

  (1) bad revision: v2 with ``--error-rate 0.5``. t_first_fail = send time of the first
      5xx answered by v2; t_back = send time from which every request is answered by the
      primary again (after the last v2 answer; the rollout must be Failed).
      time-to-rollback = t_back - t_first_fail; failed share = failed / all requests
      sent from the apply until t_back + --tail seconds.
  (2) baseline, same run: a healthy v2 (no injected errors), promoted; failed share of
      all requests from the apply until Succeeded + --tail seconds (should be 0).

``--retry-on-primary`` annotates the Canary ``meshpilot.io/retry-on-primary: "true"``: a
GET the canary fails is retried once on the primary, so its failures are counted from
the requests v1 answered on a retry (the demo app echoes ``x-envoy-attempt-count``)
besides v2's own 5xx; the target is then 0 failed user requests.

Also printed, for context (not run): Flagger's documented rollback time with its defaults
(interval 60 s x threshold 1, REFERENCE.md) and its 10 s interval floor.

Run:  .venv/bin/python benchmarks/rollback.py [--rate 100] [--interval 1s] [--threshold 1]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from harness import ControlPlane, keep_or_remove

API = "/apis/meshpilot.io/v1"
TARGET_SECONDS = 5.0
TARGET_FAILED_PCT = 0.5
FLAGGER_DEFAULT_INTERVAL_S = 60.0
FLAGGER_DEFAULT_THRESHOLD = 1
FLAGGER_FLOOR_INTERVAL_S = 10.0
FLAGGER_DEFAULT_METRIC_INTERVAL_S = 60.0


# --- the control plane ------------------------------------------------------------------




def deployment(ns: str, version: str, replicas: int, extra_args: list[str]) -> str:
    args = ", ".join(json.dumps(a) for a in ["--version", version, *extra_args])
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: myapp, namespace: {ns}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: myapp}}}}
          template:
            metadata: {{labels: {{app: myapp, version: {version}}}}}
            spec:
              containers:
              - name: app
                command: [{json.dumps(sys.executable)}, -m, meshpilot.demoapp]
                args: [{args}]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /healthz, port: http}}
                  periodSeconds: 1
        """)


def canary(ns: str, a: argparse.Namespace) -> str:
    return textwrap.dedent(f"""\
        apiVersion: flagger.app/v1beta1
        kind: Canary
        metadata:
          name: myapp
          namespace: {ns}
          annotations:
            meshpilot.io/min-requests: "{a.min_requests}"
            meshpilot.io/mirror-first: "{a.mirror_first}"
            meshpilot.io/fail-fast: "{'true' if a.fail_fast else 'false'}"
            meshpilot.io/retry-on-primary: "{'true' if a.retry_on_primary else 'false'}"
        spec:
          targetRef: {{apiVersion: apps/v1, kind: Deployment, name: myapp}}
          progressDeadlineSeconds: 60
          service: {{port: 8080, targetPort: http}}
          analysis:
            interval: {a.interval}
            threshold: {a.threshold}
            stepWeight: {a.step_weight}
            maxWeight: {a.max_weight}
            metrics:
            - name: request-success-rate
              thresholdRange: {{min: 99}}
              interval: {a.metric_interval}
        """)


# --- open-loop load ---------------------------------------------------------------------


@dataclass
class Rec:
    sched: float  # monotonic, when the request was due (open loop: not when a worker was free)
    sent: float
    done: float
    status: int  # 0 = transport error
    version: str
    attempts: int = 1  # x-envoy-attempt-count the app saw (2: a retry answered it)
    detail: str = ""  # the start of the body of a failure no app answered (Envoy's reply)


class OpenLoop:
    """Request i is due at t0 + i/rate, whatever happened to earlier ones; a pool of
    ``workers`` threads, each with its own keep-alive client through the mesh proxy,
    takes due requests from a queue. Bounded by ``max_seconds``."""

    def __init__(self, proxy: str, url: str, rate: float, workers: int,
                 max_seconds: float) -> None:
        self.proxy, self.url, self.rate = proxy, url, rate
        self.max_seconds = max_seconds
        self.records: list[Rec] = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.work: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self.late = 0
        self.workers = [threading.Thread(target=self._worker, daemon=True)
                        for _ in range(workers)]
        self.scheduler = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> None:
        for t in self.workers:
            t.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.stop_ev.set()
        self.scheduler.join(timeout=10)
        for t in self.workers:
            t.join(timeout=10)

    def snapshot(self) -> list[Rec]:
        with self.lock:
            return sorted(self.records, key=lambda r: r.sched)

    def _schedule(self) -> None:
        total = int(self.rate * self.max_seconds)
        t0 = time.monotonic() + 0.05
        for i in range(total):
            due = t0 + i / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self.stop_ev.wait(delay):
                break
            if self.stop_ev.is_set():
                break
            if delay < -0.005:
                self.late += 1
            self.work.put(due)
        for _ in self.workers:
            self.work.put(None)

    def _worker(self) -> None:
        with httpx.Client(proxy=self.proxy, trust_env=False, timeout=5.0) as client:
            while True:
                due = self.work.get()
                if due is None:
                    return
                sent = time.monotonic()
                try:
                    r = client.get(self.url)
                    status, version = r.status_code, r.headers.get("x-version", "?")
                    attempts = attempt_count(r)
                    detail = r.text[:100] if status != 200 and version == "?" else ""
                except httpx.HTTPError as exc:
                    status, version, attempts, detail = 0, type(exc).__name__, 1, str(exc)
                rec = Rec(due, sent, time.monotonic(), status, version, attempts, detail)
                with self.lock:
                    self.records.append(rec)


def failed(r: Rec) -> bool:
    return r.status != 200


def attempt_count(response: httpx.Response) -> int:
    """The mesh proxy's attempt count for the request the app answered, which the demo
    app echoes among the request headers of its JSON body: 2 when the mesh proxy
    retried (with --retry-on-primary: the canary failed it and the primary answered)."""
    try:
        raw = response.json().get("headers", {}).get("x-envoy-attempt-count", "1")
        return int(raw)
    except (ValueError, AttributeError):
        return 1


# --- the stage timeline (--timeline) -----------------------------------------------------


def timeline_events(log_path: Path, since: float) -> list[tuple[float, str, dict[str, str]]]:
    """The control plane's ``meshpilot.timeline`` lines from ``since`` on (both sides read
    ``time.monotonic``, one clock on Linux): (time, stage, fields)."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        _, sep, rest = line.partition(" meshpilot.timeline ")
        if not sep:
            continue
        parts = rest.split()
        t = float(parts[0])
        if t >= since:
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            out.append((t, parts[1], fields))
    return out


def print_timeline(log_path: Path, bad: list[Rec], t_apply: float, t_back: float) -> None:
    """Where the time between the second failure and the rollback went, stage by stage."""
    v2_fail = [r for r in bad if r.version == "v2" and r.status >= 500]
    if len(v2_fail) < 2:
        print("  timeline: fewer than two failures; nothing to show")
        return
    second = v2_fail[1]
    events = timeline_events(log_path, t_apply)
    rows: list[tuple[float, str]] = [(second.sched, "2nd failure due"),
                                      (second.sent, "2nd failure sent"),
                                      (second.done, "2nd failure answered")]
    rows += [(r.done, f"failure {i + 3} answered") for i, r in enumerate(v2_fail[2:])]
    failed_tick = next(((t, f) for t, stage, f in events
                        if stage == "tick" and f.get("phase") == "Failed"), None)
    if failed_tick is not None:
        t, f = failed_tick
        rows += [(float(f["start"]), "judging tick starts"),
                 (float(f["decided"]), "judged (reconcile done)"),
                 (float(f["stored"]), "status and route objects committed"),
                 (t, "tick done (target Deployment written)")]
        reads = [(float(f2["start"]), t2) for t2, s2, f2 in events
                 if s2 == "live-read" and float(f["start"]) <= float(f2["start"]) <= t]
        rows += [(end, f"live read ({1000 * (end - start):.0f} ms)") for start, end in reads]
        rows += [(t2, f"live read: {f2['requests']} requests, {f2['failed']} failed")
                 for t2, s2, f2 in events if s2 == "live-read" and "failed" in f2
                 and second.sched - 0.5 <= t2 <= t]
        rows += [(t2, f"reported counts: {f2['requests']} requests, {f2['failed']} failed")
                 for t2, s2, f2 in events if s2 == "reported-counts"
                 and second.sched - 0.05 <= t2 <= t]
        rows += [(r.done, f"v2 answered {r.status}") for r in bad
                 if r.version == "v2" and r.status < 500]
        rows += [(t2, f"failure report ({f2.get('failed')} failed)") for t2, s2, f2 in events
                 if s2 == "failure-report" and second.sched - 0.5 <= t2 <= t]
        after = [(t2, s2, f2) for t2, s2, f2 in events
                 if float(f["decided"]) <= t2 <= t + 1.0]
        rows += [(t2, f"{s2} {' '.join(f'{k}={v}' for k, v in f2.items())}"[:80])
                 for t2, s2, f2 in after[:40]
                 if s2 in ("store-change", "rebuild", "published")
                 or (s2.startswith("xds") and "mesh-proxy" in f2.get("node", ""))][:12]
        ack = next((t2 for t2, s2, f2 in after
                    if s2 == "xds-ack" and "mesh-proxy" in f2.get("node", "")), None)
        if ack is not None:
            print(f"  2ND FAILURE DUE TO ROUTE ACKED BY THE MESH PROXY: "
                  f"{1000 * (ack - second.sched):.1f} ms (judged "
                  f"{1000 * (float(f['decided']) - second.sched):.1f} ms, committed "
                  f"{1000 * (float(f['stored']) - second.sched):.1f} ms)")
        rebuild = next((f2 for _, s2, f2 in after if s2 == "rebuild"), None)
        if rebuild is not None:
            rows += [(float(rebuild["start"]), "rebuild starts"),
                     (float(rebuild["synced"]), "runtime synced")]
    rows.append((t_back, "t_back (first request due after the last v2 answer)"))
    print("  timeline (ms from the 2nd failure's due time):")
    for t, what in sorted(rows):
        print(f"    {1000 * (t - second.sched):8.1f}  {what}")


# --- one rollout ------------------------------------------------------------------------


@dataclass
class Poll:
    t: float
    phase: str
    weight: int


def follow(cp: ControlPlane, ns: str, until: tuple[str, ...], timeout: float,
           start_phase_changes: bool = True) -> tuple[list[Poll], dict[str, Any]]:
    """Poll the rollout every 0.1 s until it leaves its idle phase and reaches ``until``."""
    polls: list[Poll] = []
    body: dict[str, Any] = {}
    left_idle = not start_phase_changes
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = cp.rollout(ns, "myapp")
        polls.append(Poll(time.monotonic(), body["phase"], int(body.get("canaryWeight") or 0)))
        if body["phase"] in ("Progressing", "Waiting", "Promoting", "Finalising"):
            left_idle = True
        if left_idle and body["phase"] in until:
            return polls, body
        time.sleep(0.1)
    events = [e.get("message") for e in body.get("events", [])][-10:]
    raise RuntimeError(f"rollout not in {until} within {timeout}s: phase {body.get('phase')}; "
                       f"events {events}")


def first(polls: list[Poll], phase: str) -> float | None:
    return next((p.t for p in polls if p.phase == phase), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="user req/s (default 100)")
    parser.add_argument("--interval", default="1s", help="analysis interval (default 1s)")
    parser.add_argument("--threshold", type=int, default=1, help="failed checks to roll back")
    parser.add_argument("--step-weight", type=int, default=10)
    parser.add_argument("--max-weight", type=int, default=50)
    parser.add_argument("--metric-interval", default="5s",
                        help="request-success-rate window (default 5s)")
    parser.add_argument("--min-requests", type=int, default=5,
                        help="fewest canary requests a check judges (default 5: ~0.5 s of "
                             "the canary's share at 100 req/s x 10%%)")
    parser.add_argument("--error-rate", type=float, default=0.5,
                        help="share of the bad revision's requests answered 500 (default 0.5)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--workers", type=int, default=8, help="load-generator threads")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of load before each revision is applied")
    parser.add_argument("--tail", type=float, default=3.0,
                        help="seconds after t_back / Succeeded still counted in the share")
    parser.add_argument("--timeout", type=float, default=90.0, help="per rollout, seconds")
    parser.add_argument("--mirror-first", type=int, default=0,
                        help="intervals on mirrored traffic before user traffic (0: off)")
    parser.add_argument("--retry-on-primary", action="store_true",
                        help="annotate the Canary meshpilot.io/retry-on-primary: a GET the "
                        "canary fails is retried once on the primary")
    parser.add_argument("--no-fail-fast", dest="fail_fast", action="store_false",
                        help="judge only at interval ends")
    parser.add_argument("--skip-healthy", action="store_true", help="skip the baseline")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeline", action="store_true",
                        help="print the stages from the 2nd failure to the rollback "
                             "(the control plane logs their times)")
    a = parser.parse_args(argv)
    if a.rate <= 0 or a.threshold < 1 or a.workers < 1 or not 0 < a.error_rate <= 1:
        parser.error("rate, threshold, workers must be positive; 0 < error-rate <= 1")

    ns = a.namespace
    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-rollback-"))
    cp: ControlPlane | None = None
    load: OpenLoop | None = None
    started = time.monotonic()
    try:
        print(f"starting the control plane (state dir {tmp / 'state'}) ...", flush=True)
        if a.timeline:
            os.environ["MESHPILOT_TIMELINE"] = "1"
        cp = ControlPlane(tmp / "state")
        cp.apply(deployment(ns, "v1", 2, []) + "---\n" + canary(ns, a))
        follow(cp, ns, ("Initialized",), a.timeout, start_phase_changes=False)
        cp.converge()
        url = f"http://myapp.{ns}:8080/"
        with httpx.Client(proxy=cp.endpoints["mesh_proxy"], trust_env=False, timeout=10) as c:
            r = c.get(url)
            if r.status_code != 200 or r.headers.get("x-version") != "v1":
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
        print(f"Canary Initialized; load {a.rate:g} req/s to {url} via "
              f"{cp.endpoints['mesh_proxy']}", flush=True)

        budget = 3 * a.timeout + 4 * (a.settle + a.tail) + 30
        load = OpenLoop(cp.endpoints["mesh_proxy"], url, a.rate, a.workers, budget)
        load.start()
        time.sleep(a.settle)

        # (1) the bad revision
        print(f"applying the bad revision: v2 --error-rate {a.error_rate:g} ...", flush=True)
        t_apply = time.monotonic()
        cp.apply(deployment(ns, "v2", 2, ["--error-rate", f"{a.error_rate:g}"]))
        polls, final = follow(cp, ns, ("Failed", "Succeeded"), a.timeout)
        t_failed_seen = first(polls, "Failed")
        time.sleep(a.tail + 2.0)
        bad = [r for r in load.snapshot() if r.sched >= t_apply]
        history = final.get("history") or [{}]
        reason = history[-1].get("reason", "?")
        outcome = history[-1].get("outcome", "?")
        weight = max(p.weight for p in polls)

        v2 = [r for r in bad if r.version == "v2"]
        v2_fail = [r for r in v2 if r.status >= 500]
        # with --retry-on-primary a request v2 failed is answered by v1 on the retry
        retried = [r for r in bad if r.version == "v1" and r.attempts > 1]
        reached = v2_fail or retried or (a.retry_on_primary and v2)
        if final["phase"] != "Failed" or not (reached or (a.mirror_first and not v2)):
            print(f"the bad revision was not rolled back as expected: phase {final['phase']}, "
                  f"{len(v2_fail)} failed v2 answers, {len(retried)} retried on v1; "
                  f"reason {reason!r}")
            return 1
        # With the mirror-first gate no user request may reach v2: then the rollback is
        # timed from the apply to the Failed phase, and every failure counts against it.
        t_first_v2 = v2[0].sched if v2 else None
        canary_fails = sorted([*v2_fail, *retried], key=lambda r: r.sched)
        t_first_fail = canary_fails[0].sched if canary_fails else None
        # the last request v2 answered or failed (a failure retried on v1 counts: v2 had it)
        touched = sorted([*v2, *retried], key=lambda r: r.sched)
        t_last_v2 = touched[-1].sched if touched else None
        t_back = t_failed_seen or t_apply
        if t_last_v2 is not None:
            after_v2 = [r for r in bad if r.sched > t_last_v2]
            t_back = after_v2[0].sched if after_v2 else t_last_v2 + 1 / a.rate
        after = [r for r in bad if r.sched >= t_back]
        window = [r for r in bad if r.sched <= t_back + a.tail]
        win_fail = [r for r in window if failed(r)]
        not_primary_after = [r for r in after if r.version != "v1" or failed(r)]
        ttr = t_back - (t_first_fail if t_first_fail is not None else t_apply)

        # (2) baseline: a healthy revision, promoted
        healthy: dict[str, Any] | None = None
        if not a.skip_healthy:
            cp.converge()
            time.sleep(a.settle)
            print("applying a healthy revision: v2 (no injected errors) ...", flush=True)
            h_apply = time.monotonic()
            cp.apply(deployment(ns, "v2", 2, []))
            h_polls, h_final = follow(cp, ns, ("Failed", "Succeeded"), a.timeout)
            h_done = h_polls[-1].t
            time.sleep(a.tail + 0.5)
            h_recs = [r for r in load.snapshot() if h_apply <= r.sched <= h_done + a.tail]
            h_hist = h_final.get("history") or [{}]
            healthy = {"phase": h_final["phase"], "n": len(h_recs),
                       "fail": sum(failed(r) for r in h_recs),
                       "seconds": h_done - h_apply,
                       "weight": max(p.weight for p in h_polls),
                       "outcome": h_hist[-1].get("outcome", "?"),
                       "v2": sum(r.version == "v2" for r in h_recs)}
        load.stop()
        all_recs = load.snapshot()
        gen_span = (all_recs[-1].sched - all_recs[0].sched) if len(all_recs) > 1 else 0.0
        gen_rate = len(all_recs) / gen_span if gen_span > 0 else 0.0
        lag = sorted(r.sent - r.sched for r in all_recs)
        lag99 = lag[int(0.99 * (len(lag) - 1))] * 1000 if lag else float("nan")

        # --- report
        def rel(t: float | None) -> str:
            return "n/a" if t is None else f"+{t - t_apply:6.2f} s"

        pct = 100.0 * len(win_fail) / max(1, len(window))
        print()
        print(f"Canary: interval {a.interval}, threshold {a.threshold}, stepWeight "
              f"{a.step_weight}, maxWeight {a.max_weight}, request-success-rate >= 99 % over "
              f"{a.metric_interval}, minRequests {a.min_requests}; demo app 2 replicas; "
              f"open-loop {a.rate:g} req/s through the mesh proxy.")
        print()
        print(f"(1) bad revision v2 (--error-rate {a.error_rate:g}), times from the apply:")
        print(f"  first request answered by v2      {rel(t_first_v2)}")
        print(f"  first request v2 failed (5xx)     {rel(t_first_fail)}   = t_first_fail")
        print(f"  rollout phase Failed (API poll)   {rel(t_failed_seen)}")
        print(f"  last request v2 answered/failed   {rel(t_last_v2)}")
        print(f"  all requests on the primary from  {rel(t_back)}   = t_back")
        print(f"  TIME TO ROLLBACK (t_back - {'t_first_fail' if t_first_fail else 'apply'}): "
              f"{ttr:.2f} s"
              f"   [target < {TARGET_SECONDS:g} s: {'met' if ttr < TARGET_SECONDS else 'MISSED'}]")
        print(f"  FAILED REQUESTS: {len(win_fail)} of {len(window)} user requests = {pct:.2f} %"
              f" (apply .. t_back + {a.tail:g} s)   [target < {TARGET_FAILED_PCT:g} %: "
              f"{'met' if pct < TARGET_FAILED_PCT else 'MISSED'}]")
        allowed = 0 if a.mirror_first or a.retry_on_primary else 2
        lever = (" with the mirror-first gate" if a.mirror_first else
                 " with retry on the primary" if a.retry_on_primary else "")
        print(f"  FAILED USER REQUESTS: {len(win_fail)}   [issue 13 target at 100 req/s: "
              f"{allowed}{lever}: {'met' if len(win_fail) <= allowed else 'MISSED'}]")
        print(f"  of which answered by v1: {sum(r.version == 'v1' for r in win_fail)}, "
              f"transport errors: {sum(r.status == 0 for r in win_fail)}")
        for r in win_fail[:6]:
            print(f"    failed: due {rel(r.sched)}, status {r.status}, answered by "
                  f"{r.version}, attempts {r.attempts} {r.detail!r}")
        print(f"  v2 answered {len(v2)} requests ({len(v2_fail)} failed); canary weight "
              f"reached {weight} %")
        print(f"  RETRIED ON THE PRIMARY: {len(retried)} (v2 failed them, v1 answered on the "
              "retry)")
        print(f"  after t_back until +{a.tail + 2:g} s: {len(after)} requests, "
              f"{len(not_primary_after)} not a 200 from v1")
        print(f"  rollout: {final['phase']}, {outcome}: {reason}")
        if a.timeline:
            print_timeline(cp.log_path, bad, t_apply, t_back)
        span_v2 = max(1e-9, (t_last_v2 or 0.0) - (t_first_v2 or 0.0))
        floor = a.rate * a.step_weight / 100 * a.error_rate
        print(f"  context: at weight {a.step_weight} % the bad revision fails ~{floor:.1f} "
              f"req/s, so each second of exposure costs ~{floor:.1f} failed requests; "
              f"v2 served {len(v2)} requests over {span_v2:.2f} s "
              f"({len(v2) / span_v2:.1f} req/s); the window's length "
              f"({window[-1].sched - t_apply:.1f} s, including the canary's pod start) "
              "sets the denominator.")
        print()
        if healthy is not None:
            hp = 100.0 * healthy["fail"] / max(1, healthy["n"])
            print(f"(2) baseline, same run: healthy v2, {healthy['phase']} ({healthy['outcome']}) "
                  f"{healthy['seconds']:.1f} s after the apply, weight reached "
                  f"{healthy['weight']} %:")
            print(f"  failed requests {healthy['fail']} of {healthy['n']} = {hp:.2f} % "
                  f"(apply .. {healthy['phase']} + {a.tail:g} s; {healthy['v2']} answered by v2)")
            print()
        fl = FLAGGER_DEFAULT_INTERVAL_S * FLAGGER_DEFAULT_THRESHOLD
        print("Reference (documented, not run): Flagger rolls back after interval x threshold "
              f"(REFERENCE.md). Defaults: {FLAGGER_DEFAULT_INTERVAL_S:g} s x "
              f"{FLAGGER_DEFAULT_THRESHOLD} = >= {fl:g} s of exposure, judged over a "
              f"{FLAGGER_DEFAULT_METRIC_INTERVAL_S:g} s metric interval (plus Prometheus "
              f"scrape and mesh push); its floor interval {FLAGGER_FLOOR_INTERVAL_S:g} s "
              f"-> >= {FLAGGER_FLOOR_INTERVAL_S * FLAGGER_DEFAULT_THRESHOLD:g} s. At this "
              f"load that is >= {floor * fl:.0f} (defaults) / "
              f">= {floor * FLAGGER_FLOOR_INTERVAL_S:.0f} (floor) failed requests "
              "(computed, not measured).")
        print(f"Targets: time to roll back < {TARGET_SECONDS:g} s and < {TARGET_FAILED_PCT:g} % "
              f"of requests failed, with a 1 s interval, at 100 req/s, canary at 10 %.")
        print(f"Load generator: {len(all_recs)} requests at {gen_rate:.1f} req/s achieved of "
              f"{a.rate:g}; send lag p99 {lag99:.1f} ms; scheduler > 5 ms late: {load.late}. "
              f"Machine: {os.cpu_count()} CPUs, load average "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}. "
              f"Total run {time.monotonic() - started:.0f} s.")
        return 0
    finally:
        if load is not None:
            load.stop()
        if cp is not None:
            cp.stop()
        keep_or_remove(tmp, a.keep)


if __name__ == "__main__":
    raise SystemExit(main())
