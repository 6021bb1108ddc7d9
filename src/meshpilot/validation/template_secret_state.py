"""MetricTemplates across objects: the Secret a ``secretRef`` names must exist.

A missing Secret is a warning (MP2024), not an error, as for a pod's Secret: the
template is applied, and every check that uses it fails (naming the Secret) until the
Secret is applied; applied in one file with it, no warning is given.
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
    secrets = {(o.namespace, o.key.name) for o in objects
               if not o.key.group and o.key.kind == "Secret"}
    for template in templates:
        name = _secret_name(template)
        if name is not None and (template.namespace, name) not in secrets:
            found.add(codes.TEMPLATE_SECRET_MISSING, template,
                      ("spec", "provider", "secretRef", "name"),
                      f"no Secret {template.namespace}/{name}: every check using this "
                      "template fails until it is applied (keys: token, or username and "
                      "password)")


def _secret_name(template: StateObject) -> str | None:
    name = as_mapping(as_mapping(template.spec.get("provider")).get("secretRef")).get("name")
    return name if isinstance(name, str) else None
