"""DestinationRule credentialName: read by each client from its own namespace; none in
the rule's namespace is a warning (MP2012) at the field that names it."""

from __future__ import annotations

from tests.unit.test_validation_gateway_tls import found, plan, secret

RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: api-client}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: SIMPLE, credentialName: api-ca}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy: {tls: {mode: SIMPLE, credentialName: api-client}}
"""


def test_each_credential_without_a_secret_in_the_rules_namespace_is_a_warning() -> None:
    p = plan(RULE, secret("api-client", namespace="istio-system"))
    assert p.ok
    got = {(d.path, d.severity) for d in found(p, "MP2012")}
    assert got == {("spec.trafficPolicy.tls.credentialName", "warning"),
                   ("spec.trafficPolicy.portLevelSettings[0].tls.credentialName", "warning"),
                   ("spec.subsets[0].trafficPolicy.tls.credentialName", "warning")}
    message = found(p, "MP2012")[0].message
    assert "no Secret shop/api-client" in message and "own namespace" in message


def test_secrets_in_the_rules_namespace_satisfy_it() -> None:
    p = plan(RULE, secret("api-client", namespace="shop"), secret("api-ca", namespace="shop"))
    assert p.ok and found(p, "MP2012") == []
