"""meshpilot: a service mesh with progressive delivery built in.

Speaks the Istio networking/security APIs and Flagger's Canary API, and programs
real Envoy proxies over xDS, without Kubernetes.
"""

__version__ = "0.1.0"
