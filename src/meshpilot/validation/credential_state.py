"""DestinationRule ``tls.credentialName`` across objects: the client credential a proxy
originates TLS with is read from the Secret of that name in the *proxy's own* namespace
(Istio's rule: a client reads only its namespace's Secrets). The rule's own namespace is
where its own proxies read it, so no Secret there is a warning (MP2012): those proxies'
connections to the host fail closed until it exists, and it may well come later.
Proxies of other namespaces the rule reaches read their own namespace's Secret.

No message repeats a Secret's values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Path
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_client_credentials(objects: list[StateObject], report: Report,
                             found: Findings) -> None:
    rules = [o for o in objects if o.key.kind == "DestinationRule" and report(o)]
    if not rules:
        return
    secrets = {(o.namespace, o.key.name) for o in objects
               if o.key.kind == "Secret" and not o.key.group}
    for rule in rules:
        for path, name in credential_names(rule.spec):
            if (rule.namespace, name) not in secrets:
                found.add(codes.DR_NO_CREDENTIAL, rule, path,
                          f"no Secret {rule.namespace}/{name}: a client reads credentialName "
                          f"from its own namespace, so proxies in {rule.namespace} fail their "
                          f"TLS connections to {rule.spec.get('host')} until it exists "
                          f"(kubectl create -n {rule.namespace} secret generic {name} "
                          "--from-file=cert=CERT --from-file=key=KEY --from-file=cacert=CA)")


def credential_names(spec: Mapping[str, Any]) -> Iterator[tuple[Path, str]]:
    """Every ``tls.credentialName`` in the rule, with its path."""
    policies: list[tuple[Path, Any]] = [(("spec", "trafficPolicy"), spec.get("trafficPolicy"))]
    for i, subset in enumerate(as_list(spec.get("subsets"))):
        policies.append((("spec", "subsets", i, "trafficPolicy"),
                         as_mapping(subset).get("trafficPolicy")))
    for path, policy in policies:
        levels: list[tuple[Path, Any]] = [(path, policy)]
        levels += [((*path, "portLevelSettings", j), port) for j, port in
                   enumerate(as_list(as_mapping(policy).get("portLevelSettings")))]
        for where, level in levels:
            name = as_mapping(as_mapping(level).get("tls")).get("credentialName")
            if isinstance(name, str) and name:
                yield (*where, "tls", "credentialName"), name
