"""A pod template's placement: what meshpilot can honour, and what it refuses (MP0072).

Kubernetes leaves a pod whose selector no node satisfies unscheduled. meshpilot's nodes
carry two labels only (``kubernetes.io/hostname``, and ``kubernetes.io/os: linux``), so
any other selector, and any node affinity (which would need the labels too), could only
be dropped or leave the pods pending forever; either would hide a mistake, so the apply
is refused and says what is honoured (see :mod:`meshpilot.api.placement`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api.placement import HOSTNAME_LABEL, NODE_OS, OS_LABEL
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_mapping

_HONOURED = (f"only {HOSTNAME_LABEL}: NAME (a joined host's node name, or localhost) and "
             f"{OS_LABEL}: {NODE_OS} are honoured")


def placement_findings(pod: Mapping[str, Any], path: Path) -> list[Finding]:
    out = list(_selector(pod.get("nodeSelector"), (*path, "nodeSelector")))
    affinity = as_mapping(pod.get("affinity"))
    if affinity.get("nodeAffinity"):
        out.append(Finding(codes.PLACEMENT_REFUSED, (*path, "affinity", "nodeAffinity"),
                           f"nodeAffinity cannot be honoured: nodes carry no other labels; "
                           f"use spec.nodeName or nodeSelector ({_HONOURED})"))
    for field in ("podAffinity", "podAntiAffinity"):
        if affinity.get(field):
            out.append(Finding(codes.POD_FIELD_IGNORED, (*path, "affinity", field),
                               f"pod affinity {field} is not acted on: pods go to the node "
                               "their nodeName or hostname selector names"))
    named = pod.get("nodeName")
    selected = as_mapping(pod.get("nodeSelector")).get(HOSTNAME_LABEL)
    if isinstance(named, str) and named and isinstance(selected, str) and selected != named:
        out.append(Finding(codes.PLACEMENT_REFUSED, (*path, "nodeSelector", HOSTNAME_LABEL),
                           f"{HOSTNAME_LABEL} {selected!r} is not nodeName {named!r}: no node "
                           "is both, so the pods could never run"))
    return out


def _selector(selector: Any, path: Path) -> Iterator[Finding]:
    for key, value in as_mapping(selector).items():
        if key == HOSTNAME_LABEL and isinstance(value, str) and value:
            continue
        if key == OS_LABEL and value == NODE_OS:
            continue
        yield Finding(codes.PLACEMENT_REFUSED, (*path, str(key)),
                      f"nodeSelector {key}: {value!r} cannot be honoured: {_HONOURED}")
