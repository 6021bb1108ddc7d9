#!/usr/bin/env bash
# The demo: a local control plane, every scenario in examples/ applied, listed and
# inspected, a blue-green switch, a refused bad change, and a clean shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${MESHPILOT_STATE_DIR:-$PWD/.meshpilot}"
export MESHPILOT_STATE_DIR="$STATE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Offline check of examples/ (no control plane needed)"
meshpilot analyze -f examples/

step "Start the control plane"
meshpilot up
trap 'meshpilot down >/dev/null 2>&1 || true' EXIT
meshpilot status

step "Apply every scenario in examples/ (all or nothing)"
meshpilot apply -f examples/

step "What is there"
for kind in deployments services destinationrules virtualservices; do
  meshpilot get "$kind" -A
  echo
done

step "The canary's traffic split"
meshpilot describe virtualservice myapp

step "Blue-green: switch all traffic to green (v2) in one change"
sed -e 's/weight: 100/weight: TMP/; s/weight: 0/weight: 100/; s/weight: TMP/weight: 0/' \
  examples/blue-green/virtualservice.yaml | meshpilot apply -f -
meshpilot get vs myapp -n blue-green -o yaml | sed -n '/^spec:/,$p'

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
meshpilot get vs myapp

step "Stop"
meshpilot down
trap - EXIT
