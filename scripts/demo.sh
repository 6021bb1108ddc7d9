#!/usr/bin/env bash
# The demo: a local control plane with its mesh, every scenario in examples/ running as
# pods with Envoy sidecars, real traffic through the mesh, a blue-green switch, a refused
# bad change, and a clean shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${MESHPILOT_STATE_DIR:-$PWD/.meshpilot}"
export MESHPILOT_STATE_DIR="$STATE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Offline check of examples/ (no control plane needed)"
meshpilot analyze -f examples/

step "Start the control plane, apply every scenario in examples/, wait until ready"
meshpilot down >/dev/null 2>&1 || true
trap 'meshpilot down >/dev/null 2>&1 || true' EXIT
meshpilot up examples/
meshpilot status

step "What is there"
for kind in deployments services destinationrules virtualservices; do
  meshpilot get "$kind" -A
  echo
done
meshpilot get pods -A

step "Every proxy and the config version it has ACKed"
meshpilot proxy-status

step "Canary 90/10 (namespace default): 200 requests from inside the mesh"
meshpilot send http://myapp:8080/ -n 200

step "Header A/B (namespace header-ab): testers get v2, everyone else v1"
meshpilot send http://myapp.header-ab:8080/ -n 20
meshpilot send http://myapp.header-ab:8080/ -n 20 -H 'x-user-group: beta'

step "Mirror (namespace mirror): every answer from v1; v2 gets a shadow copy"
meshpilot send http://myapp.mirror:8080/ -n 20

step "Blue-green (namespace blue-green): all on blue, then switch to green in one change"
meshpilot send http://myapp.blue-green:8080/ -n 20
sed -e 's/weight: 100/weight: TMP/; s/weight: 0/weight: 100/; s/weight: TMP/weight: 0/' \
  examples/blue-green/virtualservice.yaml | meshpilot apply -f -
sleep 1
meshpilot send http://myapp.blue-green:8080/ -n 20

step "Progressive delivery: a healthy v2 walks itself into production"
meshpilot rollout status myapp -n progressive
meshpilot apply -f examples/progressive/revisions/myapp-v2.yaml.rev
meshpilot rollout status myapp -n progressive --watch --timeout 150
meshpilot send http://myapp.progressive:8080/ -n 20

step "A v3 with 30% errors is rolled back by itself, and says which check failed"
meshpilot apply -f examples/progressive/revisions/myapp-v3-bad.yaml.rev
meshpilot rollout status myapp -n progressive --watch --timeout 150 || true
meshpilot rollout history myapp -n progressive
meshpilot send http://myapp.progressive:8080/ -n 20

step "Istio's standard metrics, live (meshpilot top)"
meshpilot top --once -n progressive

step "What the mesh proxy's Envoy actually holds"
meshpilot proxy-config clusters mesh-proxy

step "A bad change is refused with file, line, field and what is valid; nothing changes"
cat > "$STATE/bad.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: myapp
  namespace: default
spec:
  hosts: [myapp]
  http:
  - route:
    - destination: {host: myapp, subset: v1}
      weight: 50
    - destination: {host: myapp, subset: v3}
      weigth: 50
YAML
if meshpilot apply -f "$STATE/bad.yaml"; then
  echo "unexpected: the bad change was accepted" >&2
  exit 1
fi
meshpilot send http://myapp:8080/ -n 50

step "Stop"
meshpilot down
trap - EXIT
