"""Argo Rollouts on meshpilot's runtime and mesh: the canary strategy with Istio traffic
routing, the blue-green strategy, and analysis (AnalysisTemplates, AnalysisRuns). A
separate controller that reuses the Flagger controller's ports (writes through the one
config path, reads the store and the runtime's pods) and workers.

- :mod:`.workloads`: a revision's Deployment (``NAME-HASH``, pods labelled
  ``rollouts-pod-template-hash``), Argo's ReplicaSet stand-in.
- :mod:`.traffic`: the edits Argo makes to the user's VirtualService (weights of the
  named routes) and DestinationRule (subset labels), and nothing else.
- :mod:`.status`: the state, kept in the Rollout's status in Argo's shape.
- :mod:`.steps`: the decision for one tick of a canary (pure, given what it reads);
  :mod:`.bluegreen` the same for blue-green; :mod:`.managed_routes` the header and mirror
  routes of setHeaderRoute/setMirrorRoute steps.
- :mod:`.run_objects`: the AnalysisRun a Rollout's analysis makes from its templates.
- :mod:`.analysis`: an AnalysisRun's state machine (pure); :mod:`.runner` measures runs
  with :mod:`.metric_providers` (prometheus, web) and writes their status.
- :mod:`.controller`: read, decide, persist the status, write.
"""

from meshpilot.delivery.argo.controller import ARGO_COMMANDS, ArgoController
from meshpilot.delivery.argo.ports import ArgoReader, ArgoWriter

__all__ = ["ARGO_COMMANDS", "ArgoController", "ArgoReader", "ArgoWriter"]
