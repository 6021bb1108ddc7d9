"""xDS: how the mesh's config reaches every Envoy, and how fast.

The flow, one way:

1. ``translate/``: pure functions from (mesh snapshot, proxy) to Envoy resources.
2. :class:`ProxyConfigBuilder` (owned by the control plane): the same resources, built once
   per *class* of proxies and per change, as immutable *resource sets*.
3. The control plane publishes an :class:`XdsSnapshot` (a mesh version and each proxy's
   config at it) to the :class:`XdsServer`, which checks each proxy's config
   (``consistency``), plans the make-before-break *phases* from what the proxy holds to
   its new config (``planner``, walking the table in ``sequence``) and sends each phase
   (``stream``, one per proxy, all on one event loop).

Words used throughout:

- **resource**: one Envoy config object of one type, by name (a Cluster, a
  RouteConfiguration). A **prepared resource** is one serialised once, with its version
  (the hash of its bytes) and its wire encodings.
- **resource set**: name -> prepared resource, for one type. **Shared** sets are given to
  every proxy of a class; an **own** set holds what one proxy alone has; a **layered**
  set is an own set over a shared one. A **config** is type -> resource set: what one
  proxy should have.
- **derived value**: something computed from an immutable set (its names, digest, the
  names its resources give) and kept on the set.
- **holding**: what a proxy holds (or has ACKed) of one type, written as a set plus the
  subscription that sees it plus a few **overrides**.
- **push**: the content of one response. **phase**: a step of an update (stage sets,
  wait for ACKs).

The identity contract, which the speed of every push rests on: **a set is never mutated,
and a builder hands back the very same object for anything that did not change** (the
snapshot builder its parsed objects, services and endpoint tuples; the config builder its
prepared resources, sets and configs). Work is then shared and skipped by identity: a
class of a thousand proxies making the same move gets one plan and one push, encoded
once; an unchanged set is not diffed. Mutating a set would serve stale derived values
(wrong versions, wrong diffs); building an equal but new object for an unchanged input
costs speed, never correctness (``benchmarks/stream_work.py`` and ``convergence.py``
measure it).
"""

from meshpilot.xds.config_builder import ProxyConfigBuilder
from meshpilot.xds.planner import Phase, PushPlanner, plan_update
from meshpilot.xds.resources import PreparedResource, resource_version
from meshpilot.xds.sequence import ORDER, PUSH_SEQUENCE
from meshpilot.xds.server import XdsServer
from meshpilot.xds.snapshot import XdsSnapshot
from meshpilot.xds.status import ProxyStatus, Refusal, SentRecord, TypeStatus
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    FULL_STATE_TYPES,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    Resources,
)

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "FULL_STATE_TYPES",
    "LISTENER",
    "ORDER",
    "PUSH_SEQUENCE",
    "ROUTE",
    "SCOPED_ROUTE",
    "Phase",
    "PreparedResource",
    "ProxyConfigBuilder",
    "ProxyStatus",
    "PushPlanner",
    "Refusal",
    "Resources",
    "SentRecord",
    "TypeStatus",
    "XdsServer",
    "XdsSnapshot",
    "plan_update",
    "resource_version",
]
