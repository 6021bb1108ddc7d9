"""A mesh config of two named networks, as several tests read it: ``network-b`` holds
the control-plane host (``fromRegistry: Kubernetes``), ``network-a`` a CIDR of other
hosts; each reaches the other through the gateway it names by address."""

from __future__ import annotations

TWO_NETWORKS = """\
meshNetworks:
  networks:
    network-a:
      endpoints: [{fromCidr: 10.3.0.0/16}]
      gateways: [{address: 10.3.0.1, port: 15443}]
    network-b:
      endpoints:
      - fromRegistry: Kubernetes
      gateways: [{address: 10.1.0.1, port: 15443}]
"""
