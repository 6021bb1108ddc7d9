"""The demo workload: a tiny HTTP service with versions, injected errors and latency.

Standard library only, so a pod starts in a fraction of a second. See :mod:`.app`.
"""

from meshpilot.demoapp.app import DemoConfig, DemoServer, main, make_server, run

__all__ = ["DemoConfig", "DemoServer", "main", "make_server", "run"]
