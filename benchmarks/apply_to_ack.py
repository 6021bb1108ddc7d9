"""From ``meshpilot apply`` to every proxy's ACK, through the real control plane.

convergence.py times a change from inside the xDS server. A user's change travels
further: the HTTP API, validation, the SQLite commit, the store's watch, the control
plane's mirror and rebuild, then xDS. This starts ``python -m meshpilot.server``, applies
``examples/canary/`` (2 Deployments x 2 pods with sidecars, plus the mesh proxy and the
ingress gateway: 6 Envoys), waits until ready, then K times applies the canary's
VirtualService with new weights and polls the readiness endpoint until the mesh version
has moved and every connected proxy has ACKed it. Per change: the apply call's own time
and the time until the last ACK seen (the poll interval bounds its resolution).

Baselines in the same run: an HTTP GET of the readiness endpoint (the API's floor) and
an apply of the unchanged VirtualService (API, validation and commit, nothing to push).

Run:  .venv/bin/python benchmarks/apply_to_ack.py [--changes 20] [--poll-ms 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import API, ControlPlane

EXAMPLE = Path(__file__).parents[1] / "examples" / "canary"
VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: myapp, namespace: default}}
spec:
  hosts: [myapp]
  http:
  - name: primary
    route:
    - destination: {{host: myapp, subset: v1, port: {{number: 8080}}}}
      weight: {v1}
    - destination: {{host: myapp, subset: v2, port: {{number: 8080}}}}
      weight: {v2}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="per change, seconds")
    args = parser.parse_args(argv)
    poll = args.poll_ms / 1000
    with tempfile.TemporaryDirectory(prefix="meshpilot-bench-apply-") as tmp:
        cp = ControlPlane(Path(tmp) / "state")
        try:
            text = "\n---\n".join(p.read_text() for p in sorted(EXAMPLE.glob("*.yaml")))
            cp.apply(text)
            cp.converge()
            get_times = []
            for _ in range(20):
                t0 = time.perf_counter()
                cp.api.get(f"{API}/readiness").raise_for_status()
                get_times.append(time.perf_counter() - t0)
            same = VS.format(v1=90, v2=10)
            cp.apply(same)
            time.sleep(0.5)
            noop_times = []
            for _ in range(10):
                t0 = time.perf_counter()
                cp.apply(same)
                noop_times.append(time.perf_counter() - t0)
            apply_times, ack_times = [], []
            for k in range(args.changes):
                before = cp.api.get(f"{API}/readiness").json()["meshVersion"]
                weight = 20 + 10 * (k % 7)  # never 10: the document applied before
                t0 = time.perf_counter()
                cp.apply(VS.format(v1=100 - weight, v2=weight))
                applied = time.perf_counter()
                deadline = t0 + args.timeout
                while True:
                    state = cp.api.get(f"{API}/readiness").json()
                    proxies = state["proxies"]
                    if state["meshVersion"] > before and proxies["synced"] == \
                            proxies["connected"] > 0:
                        break
                    if time.perf_counter() > deadline:
                        log = cp.log_path.read_text()[-3000:]
                        raise SystemExit(f"change {k + 1} not ACKed in {args.timeout:g} s: "
                                         f"{state}\n{log}")
                    time.sleep(poll)
                done = time.perf_counter()
                apply_times.append(applied - t0)
                ack_times.append(done - t0)
                time.sleep(0.3)
            connected = state["proxies"]["connected"]
        finally:
            cp.stop()

    def row(label: str, values: list[float]) -> None:
        print(f"  {label:<44}{pct(values, 50) * 1000:9.1f}{pct(values, 99) * 1000:9.1f}")

    print(f"apply -> every proxy ACKed, real control plane, {connected} Envoys, "
          f"{args.changes} weight changes, poll every {args.poll_ms:g} ms")
    print(f"  {'':<44}{'p50 ms':>9}{'p99 ms':>9}")
    row("apply of a weight change -> last ACK", ack_times)
    row("  of which the apply call itself", apply_times)
    row("baseline: apply of the unchanged document", noop_times)
    row("baseline: GET readiness (the API's floor)", get_times)
    print("  every change, ms, in order: "
          + ", ".join(f"{t * 1000:.0f}" for t in ack_times))
    after = [a - b for a, b in zip(ack_times, apply_times, strict=True)]
    print(f"  after the apply returned: p50 {statistics.median(after) * 1000:.1f} ms "
          "to the last ACK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
