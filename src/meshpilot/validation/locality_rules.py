"""Locality load balancing settings and workload localities, checked as Istio checks them.

A DestinationRule's ``localityLbSetting`` (at the top, in a subset, or per port) is
refused (MP0090) where Istio's validation refuses it: ``distribute`` together with
``failover``; ``failover`` with a topology label in ``failoverPriority``; a ``to`` weight
outside 1..100 or weights not summing to 100; a ``failover`` region that is the same on
both sides, or has ``/`` or ``*``; a ``from``/``to`` locality with an empty part or a
``*`` anywhere but at its end, or one that overlaps an earlier one. ``failover`` or
``failoverPriority`` with no ``outlierDetection`` in force is applied, and warned about
(MP2060): without ejections Envoy never leaves the nearest priority, so it would never
fail over.

A WorkloadEntry's or ServiceEntry endpoint's ``locality`` must read
``region/zone/subzone`` (MP0091).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api.locality import TOPOLOGY_LABELS
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping

_FORM = "write localities as region, region/zone or region/zone/subzone"


def _policies(body: Mapping[str, Any]) -> Iterator[tuple[Path, Mapping[str, Any], bool]]:
    """(path, traffic policy, whether outlier detection is in force there) of every
    traffic policy of a DestinationRule body, port-level ones included."""
    spec = as_mapping(body.get("spec"))
    top = as_mapping(spec.get("trafficPolicy"))
    top_outliers = "outlierDetection" in top
    places: list[tuple[Path, Mapping[str, Any], bool]] = [
        (("spec", "trafficPolicy"), top, top_outliers)]
    for i, subset in enumerate(as_list(spec.get("subsets"))):
        own = as_mapping(as_mapping(subset).get("trafficPolicy"))
        places.append((("spec", "subsets", i, "trafficPolicy"), own,
                       top_outliers or "outlierDetection" in own))
    for path, policy, outliers in places:
        yield path, policy, outliers
        for j, port in enumerate(as_list(policy.get("portLevelSettings"))):
            port = as_mapping(port)
            yield (*path, "portLevelSettings", j), port, outliers or "outlierDetection" in port


def destination_rule_findings(body: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for path, policy, outliers in _policies(body):
        setting = as_mapping(as_mapping(policy.get("loadBalancer")).get("localityLbSetting"))
        if setting:
            out.extend(_setting_findings((*path, "loadBalancer", "localityLbSetting"),
                                         setting, outliers))
    return out


def _setting_findings(path: Path, setting: Mapping[str, Any], outliers: bool
                      ) -> list[Finding]:
    distribute, failover = as_list(setting.get("distribute")), as_list(setting.get("failover"))
    priority = [str(p) for p in as_list(setting.get("failoverPriority"))]
    if distribute and failover:
        return [_bad(path, "distribute", "distribute and failover cannot both be given: "
                     "distribute sets the share of each locality, failover the order in "
                     "which they are tried; keep one")]
    if failover:
        topology = [p for p in priority if p in TOPOLOGY_LABELS]
        if topology:
            return [_bad((*path, "failoverPriority"), topology[0],
                         f"failover cannot be given with the topology label {topology[0]} "
                         "in failoverPriority: both order by region; keep one")]
    out = [*_distribute_findings(path, distribute), *_failover_findings(path, failover)]
    enabled = setting.get("enabled") is not False
    if (failover or priority) and not outliers and enabled:
        out.append(Finding(codes.FAILOVER_WITHOUT_OUTLIERS, (*path, "failover" if failover
                                                             else "failoverPriority"),
                           "failover takes effect only with outlierDetection: without "
                           "ejections Envoy keeps every request on the nearest priority; "
                           "add trafficPolicy.outlierDetection (e.g. consecutive5xxErrors)"))
    return out


def _bad(path: Path, last: str | int, message: str) -> Finding:
    return Finding(codes.BAD_LOCALITY_SETTING, (*path, last), message)


def _distribute_findings(path: Path, distribute: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    sources: list[tuple[Path, str]] = []
    for i, rule in enumerate(distribute):
        here = (*path, "distribute", i)
        rule = as_mapping(rule)
        sources.append(((*here, "from"), str(rule.get("from", ""))))
        to = as_mapping(rule.get("to"))
        weights = [w for w in to.values() if isinstance(w, int)]
        wrong = [k for k, w in to.items() if not isinstance(w, int) or not 1 <= w <= 100]
        if wrong:
            out.append(_bad((*here, "to"), wrong[0], "a locality weight must be 1 to 100"))
        elif sum(weights) != 100:
            out.append(_bad(here, "to", f"the weights add up to {sum(weights)}; they must "
                            "add up to 100 (each is a percentage of the traffic)"))
        out.extend(_overlaps([((*here, "to", k), k) for k in to]))
    out.extend(_overlaps(sources))
    return out


def _failover_findings(path: Path, failover: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    for i, rule in enumerate(failover):
        here = (*path, "failover", i)
        rule = as_mapping(rule)
        source, target = str(rule.get("from", "")), str(rule.get("to", ""))
        if source == target:
            out.append(_bad(here, "to", f"failover from {source} to itself: name another "
                            "region"))
        for side, value in (("from", source), ("to", target)):
            if "/" in value or "*" in value:
                out.append(_bad(here, side, f"failover names regions only ({value!r} has "
                                "'/' or '*'); use distribute for zones"))
    return out


def _parts(locality: str) -> list[str] | None:
    """A ``from``/``to`` locality's parts; None when malformed (an empty part, or a
    ``*`` other than one whole last part)."""
    parts = locality.split("/", 2)
    stars = locality.count("*")
    if any(not p for p in parts) or stars > 1 or (stars and not locality.endswith("*")):
        return None
    return parts


def _overlaps(localities: list[tuple[Path, str]]) -> list[Finding]:
    """Malformed localities, and any covered by an earlier one of the same list."""
    seen: list[list[str]] = []
    for path, text in localities:
        parts = _parts(text)
        if parts is None:
            return [Finding(codes.BAD_LOCALITY_SETTING, path,
                            f"locality {text!r} is malformed: {_FORM}, with '*' only as "
                            "the whole last part")]
        for earlier in seen:
            if _covers(earlier, parts) or _covers(parts, earlier):
                return [Finding(codes.BAD_LOCALITY_SETTING, path,
                                f"locality {text!r} overlaps {'/'.join(earlier)!r} given "
                                "before it; name each locality once")]
        seen.append(parts)
    return []


def _covers(wide: list[str], narrow: list[str]) -> bool:
    """Whether pattern ``wide`` covers everything ``narrow`` names."""
    for i, part in enumerate(wide):
        if part == "*":
            return True
        if i >= len(narrow) or narrow[i] != part:
            return False
    return len(wide) <= len(narrow)


def workload_locality_findings(path: Path, value: Any) -> list[Finding]:
    """A workload's ``locality`` at ``path`` (MP0091 when malformed)."""
    text = str(value)
    parts = text.split("/")
    if "*" in text or len(parts) > 3 or any(not p for p in parts[:-1]):
        return [Finding(codes.BAD_LOCALITY, path,
                        f"locality {text!r} is not a workload's locality: {_FORM} (no '*')")]
    return []


def entry_findings(body: Mapping[str, Any]) -> list[Finding]:
    """The localities of a WorkloadEntry's spec or of a ServiceEntry's endpoints."""
    spec = as_mapping(body.get("spec"))
    out: list[Finding] = []
    if "locality" in spec:
        out += workload_locality_findings(("spec", "locality"), spec["locality"])
    for i, endpoint in enumerate(as_list(spec.get("endpoints"))):
        endpoint = as_mapping(endpoint)
        if "locality" in endpoint:
            out += workload_locality_findings(("spec", "endpoints", i, "locality"),
                                              endpoint["locality"])
    return out
