"""ServiceEntry checks beyond its model: a wildcard host that DNS resolution could not
resolve (Istio refuses it the same way: with no endpoints, DNS resolves the hosts
themselves, which must then be names, not patterns)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.locality_rules import entry_findings
from meshpilot.validation.shapes import as_list, as_mapping


def service_entry_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    out = entry_findings(body)
    resolution = spec.get("resolution", "NONE")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not as_list(spec.get("endpoints")) \
            and not spec.get("workloadSelector"):
        out += [Finding(codes.WILDCARD_DNS_HOST, ("spec", "hosts", i),
                        f"host {host!r} cannot be resolved with resolution {resolution} and "
                        "no endpoints: list endpoints (addresses or names) for the hosts "
                        "it covers, or use resolution NONE")
                for i, host in enumerate(as_list(spec.get("hosts"))) if "*" in str(host)]
    return out
