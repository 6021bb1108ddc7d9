"""Sidecar ingress listeners across objects: an ingress listener whose traffic would come
back to the sidecar itself is left out on a pod (``meshpilot.mesh.sidecar_ingress``);
said at apply (MP2029), naming the workloads, rather than leaving a port that nothing
answers on.

That is the case, for a workload the Sidecar selects, when the port the listener hands
its traffic to is not one its containers declare (the runtime moves a declared port's
app to its own port; an undeclared one is where the sidecar itself listens) and is the
sidecar's own: the listener's port itself (no ``defaultEndpoint``, Istio's passthrough
to the same port) or another ingress listener's port. A unix socket never loops.

And an ingress listener's ``tls`` is presented, as in Istio, only on a port whose
PeerAuthentication mode is DISABLE for the workload: where a selected workload's port is
STRICT or PERMISSIVE (the default) the mesh's mutual TLS is what it speaks (MP2028).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.security_state import parsed_peer_authentications
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]
ROOT_NAMESPACE = "istio-system"
WORKLOAD_KINDS = ("Deployment", "Rollout")


def check_sidecar_ingress(objects: list[StateObject], report: Report, found: Findings) -> None:
    sidecars = [o for o in objects if o.key.kind == "Sidecar" and report(o)
                and as_list(o.spec.get("ingress"))]
    if not sidecars:
        return
    workloads = [o for o in objects if o.key.kind in WORKLOAD_KINDS]
    policies = [p for _, p in parsed_peer_authentications(objects)]
    for sidecar in sidecars:
        selected = [w for w in workloads if _selects(sidecar, w)]
        _check_tls(sidecar, selected, policies, found)
        _check_loops(sidecar, selected, found)


def _check_loops(sidecar: StateObject, selected: list[StateObject], found: Findings) -> None:
    """MP2029 where a listener's target is the sidecar's own port on a selected workload
    that does not declare it."""
    listeners = [as_mapping(x) for x in as_list(sidecar.spec.get("ingress"))]
    taken = {_number(x) for x in listeners}
    for i, listener in enumerate(listeners):
        target = _target(listener)
        if target is None or target not in taken:
            continue
        lost = sorted(f"{w.key.kind} {w.key.name}" for w in selected
                      if target not in _declared(w))
        if lost:
            where = "defaultEndpoint" if "defaultEndpoint" in listener else "port"
            found.add(codes.SIDECAR_INGRESS_LOOP, sidecar, ("spec", "ingress", i, where),
                      _message(_number(listener), target, lost))


def _check_tls(sidecar: StateObject, selected: list[StateObject], policies: list[Any],
               found: Findings) -> None:
    """MP2028 where a listener's ``tls`` would not be presented: the port's mode is not
    DISABLE for a selected workload (for the Sidecar's own selector's labels when it
    selects none yet)."""
    from meshpilot.security.peer_authentication import effective_mtls  # see security_state

    selector = as_mapping(as_mapping(sidecar.spec.get("workloadSelector")).get("labels"))
    who = [(f"{w.key.kind} {w.key.name}", w.namespace, _labels(w)) for w in selected] or \
        [(f"the workloads it selects in {sidecar.namespace}", sidecar.namespace,
          dict(selector))]
    for i, listener in enumerate(as_list(sidecar.spec.get("ingress"))):
        listener = as_mapping(listener)
        number = _number(listener)
        if not listener.get("tls") or number is None:
            continue
        modes = {name: effective_mtls(policies, ns, labels, number).mode
                 for name, ns, labels in who}
        kept = sorted(f"{name} ({mode})" for name, mode in modes.items() if mode != "DISABLE")
        if kept:
            found.add(codes.SIDECAR_INGRESS_TLS, sidecar, ("spec", "ingress", i, "tls"),
                      f"tls on ingress port {number} is not presented on {', '.join(kept)}: "
                      "as in Istio, a sidecar terminates the user's TLS only where the "
                      "port's PeerAuthentication mode is DISABLE, and speaks the mesh's "
                      "mutual TLS otherwise; give the port portLevelMtls mode DISABLE in "
                      "a PeerAuthentication selecting the workload")


def _labels(workload: StateObject) -> dict[str, str]:
    template = as_mapping(workload.spec.get("template"))
    labels = as_mapping(as_mapping(template.get("metadata")).get("labels"))
    return {str(k): str(v) for k, v in labels.items()}


def _message(number: int | None, target: int, lost: list[str]) -> str:
    what = ("without defaultEndpoint it forwards to its own port" if number == target
            else f"it forwards to port {target}, another ingress listener of the sidecar")
    return (f"ingress port {number}: {what}, which no container of {', '.join(lost)} "
            "declares, so the traffic would come back to the sidecar; no listener is made "
            "for it on those pods. Give defaultEndpoint 127.0.0.1:<the app's port>, or "
            "declare the port as a containerPort")


def _number(listener: Mapping[str, Any]) -> int | None:
    number = as_mapping(listener.get("port")).get("number")
    return number if isinstance(number, int) else None


def _target(listener: Mapping[str, Any]) -> int | None:
    """The pod port the listener hands its traffic to; None for a unix socket."""
    endpoint = listener.get("defaultEndpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return _number(listener)
    if endpoint.startswith("unix://"):
        return None
    port = endpoint.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def _declared(workload: StateObject) -> set[int]:
    pod = as_mapping(as_mapping(workload.spec.get("template")).get("spec"))
    return set(_ports(pod))


def _ports(pod: Mapping[str, Any]) -> Iterator[int]:
    for c in as_list(pod.get("containers")):
        for p in as_list(as_mapping(c).get("ports")):
            number = as_mapping(p).get("containerPort")
            if isinstance(number, int):
                yield number


def _selects(sidecar: StateObject, workload: StateObject) -> bool:
    """Whether the Sidecar may apply to the workload's pods: its namespace (any, for a
    root-namespace Sidecar without a selector) and its selector's labels."""
    selector = as_mapping(as_mapping(sidecar.spec.get("workloadSelector")).get("labels"))
    if sidecar.namespace != workload.namespace and not (
            sidecar.namespace == ROOT_NAMESPACE and not selector):
        return False
    template = as_mapping(workload.spec.get("template"))
    labels = as_mapping(as_mapping(template.get("metadata")).get("labels"))
    return all(labels.get(k) == v for k, v in selector.items())
