"""MetricTemplates across objects: the Secret a ``secretRef`` names must exist, and
hold the keys the template's provider reads.

A missing Secret is a warning (MP2024), not an error, as for a pod's Secret: the
template is applied, and every check that uses it fails (naming the Secret) until the
Secret is applied; applied in one file with it, no warning is given. A Secret without
the keys its provider reads (MP2049) is a warning for the same reason: prometheus reads
``token``, or ``username`` and ``password``; graphite and influxdb (1.x) read
``username`` and ``password`` only, so Flagger's InfluxDB 2 Secret (``token``, ``org``)
is named as such.
"""

from __future__ import annotations

from collections.abc import Callable

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_template_secrets(objects: list[StateObject], report: Report,
                           found: Findings) -> None:
    templates = [o for o in objects if o.key.kind == "MetricTemplate" and report(o)]
    if not templates:
        return
    secrets = {(o.namespace, o.key.name): _keys(o) for o in objects
               if not o.key.group and o.key.kind == "Secret"}
    for template in templates:
        name = _secret_name(template)
        if name is None:
            continue
        keys = secrets.get((template.namespace, name))
        if keys is None:
            found.add(codes.TEMPLATE_SECRET_MISSING, template,
                      ("spec", "provider", "secretRef", "name"),
                      f"no Secret {template.namespace}/{name}: every check using this "
                      "template fails until it is applied (keys: token, or username and "
                      "password)")
            continue
        kind = as_mapping(template.spec.get("provider")).get("type")
        missing = _missing_keys(str(kind), keys)
        if missing:
            found.add(codes.TEMPLATE_NOT_AS_WRITTEN, template,
                      ("spec", "provider", "secretRef", "name"),
                      f"Secret {template.namespace}/{name} has {_listed(keys)}; a {kind} "
                      f"provider reads {missing}: every check using this template fails "
                      "until the Secret has them")


def _missing_keys(kind: str, keys: set[str]) -> str | None:
    """What the provider reads, when the Secret lacks it; None when it has it."""
    pair = {"username", "password"} <= keys
    if kind == "prometheus":
        return None if "token" in keys or pair else "token, or username and password"
    if kind in ("graphite", "influxdb") and not pair:
        influx2 = " (token and org are InfluxDB 2's, which meshpilot does not query)" \
            if kind == "influxdb" and keys & {"token", "org"} else ""
        return "username and password" + influx2
    return None


def _listed(keys: set[str]) -> str:
    return "the keys " + ", ".join(sorted(keys)) if keys else "no keys"


def _keys(secret: StateObject) -> set[str]:
    return {str(k) for field in ("data", "stringData")
            for k in as_mapping(secret.body.get(field))}


def _secret_name(template: StateObject) -> str | None:
    name = as_mapping(as_mapping(template.spec.get("provider")).get("secretRef")).get("name")
    return name if isinstance(name, str) else None
