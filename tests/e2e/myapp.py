"""The objects most end-to-end tests apply: the demo app as ``myapp`` in some versions,
its Service on port 8080, subsets by version, and VirtualServices over them.

Written for reading at the call site: ``myapp.version("v2", args="--error-rate 0.3")``,
``myapp.split(v1=80, v2=20)``, ``myapp.routes(\"\"\"- route: ...\"\"\")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.builders import (
    by_version,
    demo_deployment,
    destination_rule,
    from_yaml,
    gateway,
    route_to,
    virtual_service,
    weighted,
)
from tests.builders import service as service_body

Body = dict[str, Any]


def version(v: str, *, replicas: int = 1, args: str = "") -> Body:
    """Deployment ``myapp-<v>``: demo app pods ``app: myapp, version: <v>``; ``args`` are
    more demo app flags (``--error-rate 0.3 --latency-ms 60``)."""
    return demo_deployment(f"myapp-{v}", v, replicas=replicas, args=args)


def service(name: str = "myapp") -> Body:
    """The Service ``name`` on port 8080 in front of the demo app pods ``app: <name>``."""
    return service_body(name, port=8080, target_port="http")


def subsets(*versions: str, traffic_policy: str | Mapping[str, Any] | None = None,
            host: str = "myapp") -> Body:
    """A DestinationRule with a subset per version (v1 and v2 when none is named) and an
    optional top-level ``traffic_policy`` (YAML or a mapping)."""
    policy = from_yaml(traffic_policy) if isinstance(traffic_policy, str) else traffic_policy
    return destination_rule(host, subsets=by_version(*(versions or ("v1", "v2"))),
                            traffic_policy=policy)


def routes(http: str | list[Body], *, host: str = "myapp") -> Body:
    """A VirtualService (named after ``host``) whose ``http`` rules are given as YAML or
    as bodies."""
    rules = from_yaml(http) if isinstance(http, str) else http
    return virtual_service(host, http=rules)


def split(**weights: int) -> Body:
    """A VirtualService splitting myapp's traffic over subsets: ``split(v1=80, v2=20)``."""
    return virtual_service("myapp", http=[weighted("myapp", weights)])


def ingress(subset: str) -> list[Body]:
    """A Gateway for any host at the ingress gateway, and its route to myapp ``subset``."""
    return [gateway("my-gateway", ["*"]),
            virtual_service("myapp-ingress", hosts=["*"], gateways=["my-gateway"],
                            http=[route_to("myapp", subset)], namespace=None)]
