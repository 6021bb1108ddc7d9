"""``python -m meshpilot.hosts join ...``: the node agent's process (``meshpilot host join``
starts it). Runs in the foreground until SIGTERM/SIGINT, which stops its sidecar."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from meshpilot.api.placement import LOCAL_NODE, joinable
from meshpilot.hosts.agent import OUTBOUND_ADDRESS, AgentOptions, HostAgent, JoinFailed
from meshpilot.mesh.model import OUTBOUND_PROXY_PORT
from meshpilot.proxy.envoy import EnvoyError


def _app_ports(values: list[str]) -> dict[str, int]:
    out = {}
    for value in values:
        name, _, port = value.partition("=")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"--app-port {value!r}: write NAME=PORT, NAME a port name of the group's "
                "template (http=9080)")
        out[name] = int(port)
    return out


def parse(argv: list[str] | None = None) -> AgentOptions:
    parser = argparse.ArgumentParser(prog="meshpilot-host")
    sub = parser.add_subparsers(dest="command", required=True)
    join = sub.add_parser("join", help="join a WorkloadGroup and run this host's sidecar")
    join.add_argument("--server", required=True, help="the control plane's API (https://)")
    join.add_argument("--token", required=True)
    join.add_argument("--group", required=True, help="NAMESPACE/NAME of the WorkloadGroup")
    join.add_argument("--address", required=True, help="this host's address in the mesh")
    join.add_argument("--ca-file", required=True, help="the control plane's roots")
    join.add_argument("--state-dir", required=True, help="where this host's key and "
                                                         "sidecar files live")
    join.add_argument("--app-port", action="append", default=[],
                      help="NAME=PORT: the app here serves the group's port NAME on PORT")
    join.add_argument("--outbound-port", type=int, default=OUTBOUND_PROXY_PORT)
    join.add_argument("--node-name", default="",
                      help="this host's node name: Deployments whose template names it "
                           "(spec.nodeName, nodeSelector kubernetes.io/hostname) run here")
    join.add_argument("--pod-addresses", default="",
                      help="CIDR of this host's own addresses for those pods (default: "
                           "--address alone, one pod at a time)")
    join.add_argument("--east-west-gateway", "--network-gateway", action="store_true",
                      help="also run the east-west gateway of this host's network here "
                           "(port 15443 at --address), which meshNetworks names by "
                           "registryServiceName istio-eastwestgateway.istio-system.svc."
                           "cluster.local, so other networks reach this one through it")
    args = parser.parse_args(argv)
    try:
        ports = _app_ports(args.app_port)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.node_name and not joinable(args.node_name):
        parser.error(f"--node-name {args.node_name!r}: a DNS label (lower-case letters, "
                     f"digits, '-', at most 63) other than {LOCAL_NODE!r}, the control "
                     "plane's own host")
    return AgentOptions(server=args.server.rstrip("/"), token=args.token, group=args.group,
                        address=args.address, ca_file=Path(args.ca_file),
                        state_dir=Path(args.state_dir), app_ports=ports,
                        outbound_port=args.outbound_port, node_name=args.node_name,
                        pod_addresses=args.pod_addresses,
                        east_west_gateway=args.east_west_gateway)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    options = parse(argv)
    try:
        agent = HostAgent(options)
        joined = agent.join()
    except JoinFailed as exc:
        print(f"meshpilot host join: {exc}", file=sys.stderr)
        return 2
    try:
        agent.start_sidecar()
        agent.start_gateway()
        agent.start_pods()
        agent.start_watch()
    except (JoinFailed, EnvoyError, ValueError) as exc:
        agent.stop()
        print(f"meshpilot host join: joined, but the sidecar did not start: {exc}",
              file=sys.stderr)
        return 3

    def _stop(signum: int, frame: Any) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"joined {joined['namespace']}/{joined['entry']} as {joined['identity']}; app "
          f"outbound proxy: HTTP_PROXY=http://{OUTBOUND_ADDRESS}:{options.outbound_port}",
          flush=True)
    try:
        return agent.run()
    finally:
        agent.stop()


if __name__ == "__main__":
    raise SystemExit(main())
