"""Local workloads: Deployments run as pods (app process + Envoy sidecar) on loopback IPs.

See :class:`LocalRuntime` for the entry point, :mod:`.pod` for a pod's lifecycle and
stop sequence, :mod:`.probes` for readiness, :mod:`.images` for image → command maps and
:mod:`.ipam` for pod addresses.
"""

from meshpilot.runtime.images import IMAGES_ENV, ImageMap, ImageMapError, NoCommand, resolve_command
from meshpilot.runtime.ipam import DEFAULT_IP_RANGE, IpAllocator, IpRangeExhausted
from meshpilot.runtime.pod import Pod, PodPhase, pod_name, template_hash
from meshpilot.runtime.probes import DEFAULT_PERIOD_SECONDS, ProbeSpec, probe_spec, run_probe
from meshpilot.runtime.runtime import LocalRuntime

__all__ = [
    "DEFAULT_IP_RANGE",
    "DEFAULT_PERIOD_SECONDS",
    "IMAGES_ENV",
    "ImageMap",
    "ImageMapError",
    "IpAllocator",
    "IpRangeExhausted",
    "LocalRuntime",
    "NoCommand",
    "Pod",
    "PodPhase",
    "ProbeSpec",
    "pod_name",
    "probe_spec",
    "resolve_command",
    "run_probe",
    "template_hash",
]
