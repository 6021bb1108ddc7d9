"""Kubernetes' HorizontalPodAutoscaler on meshpilot's runtime: a controller beside the
rollout controllers that scales Deployments through the store.

- :mod:`.replicas`: the replica calculator (usage ratio, tolerance, missing and unready
  pods), pure.
- :mod:`.scaling`: stabilisation windows, ``behavior`` policies, min/max, pure but for
  the history it is handed.
- :mod:`.metrics`: each metric measured (CPU from the pods' processes, the mesh's
  request rate) and its ``currentMetrics`` entry.
- :mod:`.primary`: Flagger's ``autoscalerRef``: the primary's autoscaler, copied from the
  target's.
- :mod:`.controller`: read, measure, decide, scale, report.
"""

from meshpilot.delivery.autoscaling.controller import AutoscalerController
from meshpilot.delivery.autoscaling.ports import (
    AutoscalerReader,
    AutoscalerWriter,
    PodMetrics,
    PodSample,
)

__all__ = ["AutoscalerController", "AutoscalerReader", "AutoscalerWriter", "PodMetrics",
           "PodSample"]
