"""xDS: the ADS server that programs Envoy, and the cache deciding what each proxy gets.

``XdsServer(resources_for)`` serves State of the World and Delta ADS; ``update(version)``
recomputes every connected proxy's resources and pushes only what changed, in
make-before-break order (CDS → EDS, then LDS → SRDS → RDS, then removals).
"""

from meshpilot.xds.cache import Entry, Phase, Push, plan_update, resource_version
from meshpilot.xds.server import XdsServer
from meshpilot.xds.status import ProxyStatus, SentRecord, TypeStatus
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    FULL_STATE_TYPES,
    LISTENER,
    ORDER,
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
    "ROUTE",
    "SCOPED_ROUTE",
    "Entry",
    "Phase",
    "ProxyStatus",
    "Push",
    "Resources",
    "SentRecord",
    "TypeStatus",
    "XdsServer",
    "plan_update",
    "resource_version",
]
