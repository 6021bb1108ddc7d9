"""What checking a proxy's credential costs at stream open, with and without the identity.

An xDS stream (and a failure report stream) is admitted after one HMAC of the proxy's
credential, compared in constant time. Binding the workload identity to the token adds
the identity (kind, namespace, workload, pod, service account, labels) to the message
the HMAC covers. Side by side, in the same process, on the same node:

- ``node id only``: the check before the binding (HMAC of the node id);
- ``node id + identity``: today's ``ProxyTokens.verify_proxy``.

The check runs once per stream open, never per push; the figure that matters is how long
a thousand proxies reconnecting at once spend in it.

Run:  .venv/bin/python benchmarks/stream_credential.py [--labels 5] [--checks 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import timeit

from meshpilot.mesh.model import ProxyNode
from meshpilot.security.proxy_tokens import ProxyTokens


def node_id_only(key: bytes, node_id: str, token: str) -> bool:
    """The check as it was: the HMAC of the node id alone."""
    mine = hmac.new(key, node_id.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mine.encode(), token.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--checks", type=int, default=100_000)
    args = parser.parse_args()
    key = b"k" * 32
    tokens = ProxyTokens(key)
    labels = {"app": "myapp", "version": "v1", **{f"label-{i}": f"value-{i}"
                                                  for i in range(max(0, args.labels - 2))}}
    node = ProxyNode(
        id="sidecar~127.10.0.7~myapp-v1-7d9f8c6b5d-x2x4z.default~default.svc.cluster.local",
        kind="sidecar", namespace="default", ip="127.10.0.7", workload="myapp-v1",
        name="myapp-v1-7d9f8c6b5d-x2x4z", service_account="myapp", labels=labels)
    old = hmac.new(key, node.id.encode(), hashlib.sha256).hexdigest()
    new = tokens.for_proxy(node)
    assert node_id_only(key, node.id, old) and tokens.verify_proxy(node, new)
    rows = (("node id only", lambda: node_id_only(key, node.id, old)),
            ("node id + identity", lambda: tokens.verify_proxy(node, new)))
    print(f"{len(labels)} labels, best of 5 x {args.checks} checks")
    for name, check in rows:
        best = min(timeit.repeat(check, number=args.checks, repeat=5)) / args.checks
        print(f"{name:20} {best * 1e6:7.2f} us per stream open   "
              f"{best * 1e3 * 1000:6.1f} ms for 1,000 reconnecting proxies")


if __name__ == "__main__":
    main()
