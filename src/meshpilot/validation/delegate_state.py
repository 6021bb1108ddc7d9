"""Delegate VirtualServices across objects: a root rule's ``delegate`` must name a
VirtualService without hosts (Istio's only delegates), else the rule is dropped; a
delegate's own ``delegate`` rules are not followed (one level, as Istio), and a delegate's
``tcp`` / ``tls`` routes and ``gateways`` are not read (its root decides where it
applies). Each is a warning (MP2023) on the VirtualService that says it."""

from __future__ import annotations

from collections.abc import Callable

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_delegates(objects: list[StateObject], report: Report, found: Findings) -> None:
    services = [o for o in objects if o.key.kind == "VirtualService"]
    delegates = {(o.namespace, o.key.name) for o in services if not o.spec.get("hosts")}
    for vs in services:
        if not report(vs):
            continue
        is_delegate = (vs.namespace, vs.key.name) in delegates
        for i, rule in enumerate(as_list(vs.spec.get("http"))):
            target = as_mapping(as_mapping(rule).get("delegate"))
            if target:
                _target(vs, i, target, is_delegate, delegates, found)
        if is_delegate:
            _delegate_fields(vs, found)


def _target(vs: StateObject, i: int, target: dict[str, object] | object, is_delegate: bool,
            delegates: set[tuple[str, str]], found: Findings) -> None:
    path = ("spec", "http", i, "delegate")
    if is_delegate:
        found.add(codes.DELEGATE_UNUSABLE, vs, path,
                  "a delegate's own delegate rules are not followed (one level, as Istio): "
                  "this rule is dropped")
        return
    mapping = as_mapping(target)
    key = (str(mapping.get("namespace") or vs.namespace), str(mapping.get("name")))
    if key not in delegates:
        found.add(codes.DELEGATE_UNUSABLE, vs, path,
                  f"no VirtualService {key[0]}/{key[1]} without hosts (what a delegate is): "
                  "this rule routes nothing until one exists")


def _delegate_fields(vs: StateObject, found: Findings) -> None:
    for field in ("gateways", "tcp", "tls"):
        if vs.spec.get(field):
            found.add(codes.DELEGATE_UNUSABLE, vs, ("spec", field),
                      f"a VirtualService without hosts is a delegate: its {field} are not "
                      "read (the root that delegates to it decides where its http rules "
                      "apply)")
