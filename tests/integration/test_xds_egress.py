"""The outbound traffic policy against real Envoy, SotW and Delta (istio.io, "Accessing
External Services"): with ALLOW_ANY a request for a host outside the registry reaches the
host its URL names (resolved by a DNS responder on loopback, never the system's); with
REGISTRY_ONLY it gets 502 from BlackHoleCluster; registering the host (a service of the
mesh) routes it as the mesh's again; a Sidecar's policy applies to its workload only.
Switching modes sends one ECDS resource and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from test_xds_scoped_routes import EXTERNAL, World, world_factory  # noqa: F401 - fixture

from meshpilot.api.networking import Sidecar
from meshpilot.mesh.model import MeshService, Named, ServicePort
from meshpilot.xds import ROUTE, SCOPED_ROUTE
from meshpilot.xds.translate import egress
from meshpilot.xds.types import EXTENSION_CONFIG

APIS = ["GRPC", "DELTA_GRPC"]


def external_url(world: World) -> str:
    return f"http://{EXTERNAL}:{world.mesh.backends['X'].port}/"


def closed(world: World) -> Any:
    return dataclasses.replace(world.mesh.mesh_config, outbound_mode="REGISTRY_ONLY")


def sidecar(mode: str | None) -> Named[Any]:
    policy = {} if mode is None else {"mode": mode}
    obj = Sidecar.model_validate(yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  outboundTrafficPolicy: {policy}
"""))
    return Named("default", "web", obj)


@pytest.mark.parametrize("api_type", APIS)
def test_allow_any_passes_through_and_registry_only_blackholes(
    world_factory: Callable[[str], World], api_type: str,  # noqa: F811 - the fixture
) -> None:
    world = world_factory(api_type)
    # Given the default mode, ALLOW_ANY: the request reaches the host its URL names
    assert world.body(external_url(world)) == "X"
    assert EXTERNAL in world.dns.asked
    assert world.body("http://alpha:8080/") == "A1"  # the mesh's hosts as before

    # When the mesh config says REGISTRY_ONLY: one ECDS resource changes, nothing else
    sent = world.push(mesh_config=closed(world))
    assert [(r.type_url, r.resources) for r in sent] == [
        (EXTENSION_CONFIG, (egress.POLICY_FILTER,))]
    # Then the unknown host gets 502 from BlackHoleCluster, and no DNS lookup
    asked = len(world.dns.asked)
    refused = world.get(external_url(world))
    assert refused.status_code == 502 and "BlackHoleCluster" in refused.text
    assert world.get("http://nowhere:8080/").status_code == 502
    assert len(world.dns.asked) == asked
    assert world.body("http://beta:8080/") == "B"
    # a known host at a port it does not list goes by the mode too (Istio's blackhole
    # route of a known host's other ports)
    assert world.get("http://alpha:9999/").status_code == 502


@pytest.mark.parametrize("api_type", APIS)
def test_registering_the_host_routes_it_as_the_meshs(
    world_factory: Callable[[str], World], api_type: str,  # noqa: F811 - the fixture
) -> None:
    world = world_factory(api_type)
    world.push(mesh_config=closed(world))
    assert world.get(f"http://{EXTERNAL}:8080/").status_code == 502
    # When the host becomes a service of the mesh (as a ServiceEntry makes it)
    entry = MeshService(EXTERNAL, EXTERNAL, "default", (ServicePort(8080, "http"),))
    sent = world.push(extra=(entry,))
    # Then its scope and route config come, and the policy filter learns its name
    types = {r.type_url for r in sent}
    assert {SCOPED_ROUTE, ROUTE, EXTENSION_CONFIG} <= types
    assert world.body(f"http://{EXTERNAL}:8080/") == "X"
    # and without it, blackholed again
    world.push(extra=())
    assert world.get(f"http://{EXTERNAL}:8080/").status_code == 502


@pytest.mark.parametrize("mode", ["REGISTRY_ONLY", None])
def test_a_sidecar_policy_closes_its_workload_only(
    world_factory: Callable[[str], World], mode: str | None,  # noqa: F811 - the fixture
) -> None:
    """A Sidecar selecting this workload with REGISTRY_ONLY (or a policy without a mode,
    which Istio reads as REGISTRY_ONLY) while the mesh stays ALLOW_ANY."""
    world = world_factory("DELTA_GRPC")
    assert world.body(external_url(world)) == "X"
    world.push(sidecars=(sidecar(mode),))
    assert world.get(external_url(world)).status_code == 502
    assert world.body("http://alpha:8080/") == "A1"
    world.push(sidecars=(sidecar("ALLOW_ANY"),))
    assert world.body(external_url(world)) == "X"


def test_the_policy_judges_the_wildcard_scope_where_wildcards_are_known(
    world_factory: Callable[[str], World],  # noqa: F811 - the fixture
) -> None:
    """With a wildcard host known (Istio's "Egress using Wildcard Hosts"), routing scopes
    are keyed by the computed scope header: a name the pattern covers is the mesh's (its
    entry answers, in either mode), and a host nothing covers still goes by the policy
    (passed through with ALLOW_ANY, 502 with REGISTRY_ONLY)."""
    world = world_factory("DELTA_GRPC")
    wild = MeshService("*.wild.test", "*.wild.test", "default", (ServicePort(8080, "http"),))
    world.push(extra=(wild,))
    # covered: no DNS name behind it, so only the wildcard entry's route can answer
    assert world.body("http://api.wild.test:8080/") == "X"
    assert world.body(external_url(world)) == "X"  # passed through, re-keyed
    assert world.body("http://alpha:8080/") == "A1"
    world.push(mesh_config=closed(world))
    assert world.body("http://api.wild.test:8080/") == "X"
    refused = world.get(external_url(world))
    assert refused.status_code == 502 and "BlackHoleCluster" in refused.text
