"""The mTLS mode a workload's sidecar accepts on a port, from PeerAuthentication.

Istio's rules, which users already rely on:

- Levels, narrowest first: a policy whose selector matches the workload (in the
  workload's namespace), a namespace-wide policy (no selector, same namespace), a
  mesh-wide policy (no selector, in the root namespace). A selector policy in the root
  namespace is ignored.
- At each level only the oldest policy counts.
- ``UNSET`` (or no ``mtls``) inherits from the level above; with nothing above, the
  mode is PERMISSIVE (Istio's default, which keeps plaintext clients working).
- ``portLevelMtls`` of the workload policy overrides the mode for that port; an UNSET
  port mode inherits the workload's mode.

The result carries how it was reached, level by level, for ``meshpilot describe``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from meshpilot.api.security import MtlsMode, PeerAuthentication
from meshpilot.security.policy_scope import (
    DEFAULT_ROOT_NAMESPACE,
    IgnoredPolicy,
    PolicyRef,
    has_selector,
    oldest_first,
    selects,
)

EffectiveMode = Literal["DISABLE", "PERMISSIVE", "STRICT"]
Level = Literal["mesh", "namespace", "workload", "port"]
DEFAULT_MODE: EffectiveMode = "PERMISSIVE"

_LEVEL_WORDS: Mapping[Level, str] = MappingProxyType({
    "mesh": "mesh-wide policy",
    "namespace": "namespace-wide policy",
    "workload": "workload policy",
    "port": "port-level setting of workload policy",
})

_ROOT_SELECTOR_IGNORED = (
    "a PeerAuthentication with a workload selector in the root namespace is ignored; "
    "put it in the workload's namespace, or drop the selector to make it mesh-wide"
)


@dataclass(frozen=True)
class MtlsStep:
    """One level's say: the policy in force there and the mode it writes (maybe UNSET)."""

    level: Level
    policy: PolicyRef
    mode: MtlsMode
    port: int | None = None

    def describe(self) -> str:
        where = f" for port {self.port}" if self.port is not None else ""
        return f"{_LEVEL_WORDS[self.level]} {self.policy.namespace}/{self.policy.name}{where}"


@dataclass(frozen=True)
class MtlsDecision:
    """The mode, and why: ``steps`` run from the mesh level down, and the last step
    whose mode is not UNSET decided it (none did: Istio's default, PERMISSIVE)."""

    mode: EffectiveMode
    steps: tuple[MtlsStep, ...]
    shadowed: tuple[PolicyRef, ...] = ()  # lost to an older policy at the same level
    ignored: tuple[IgnoredPolicy, ...] = ()

    @property
    def decided_by(self) -> MtlsStep | None:
        return next((s for s in reversed(self.steps) if s.mode != "UNSET"), None)

    @property
    def level(self) -> Level | Literal["default"]:
        step = self.decided_by
        return step.level if step else "default"

    @property
    def reason(self) -> str:
        step = self.decided_by
        if step is None:
            inherited = "; ".join(f"{s.describe()} is UNSET" for s in self.steps)
            prefix = f"{inherited}; " if inherited else "no PeerAuthentication applies; "
            return f"{prefix}{DEFAULT_MODE} is the default"
        text = f"{self.mode} from {step.describe()}"
        below = self.steps[self.steps.index(step) + 1:]
        if below:
            text += " (inherited: " + "; ".join(f"{s.describe()} is UNSET" for s in below) + ")"
        return text


def effective_mtls(
    policies: Iterable[PeerAuthentication],
    namespace: str,
    labels: Mapping[str, str],
    port: int | None = None,
    *,
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
) -> MtlsDecision:
    """The mTLS mode for the workload (``namespace``, ``labels``) on ``port`` (the
    container port; None for the workload as a whole)."""
    by_level, ignored = _levels_for(policies, namespace, labels, root_namespace)
    chosen = {level: found[0] for level, found in by_level.items() if found}
    shadowed = tuple(PolicyRef.of(p) for found in by_level.values() for p in found[1:])
    steps = _steps(chosen, port)
    decided = next((s.mode for s in reversed(steps) if s.mode != "UNSET"), DEFAULT_MODE)
    return MtlsDecision(decided, steps, shadowed, ignored)


def _steps(chosen: Mapping[Level, PeerAuthentication], port: int | None) -> tuple[MtlsStep, ...]:
    """Each level's policy in inheritance order, then the workload policy's port setting."""
    steps = [MtlsStep(level, PolicyRef.of(p), _mode(p)) for level, p in chosen.items()]
    workload = chosen.get("workload")
    port_mode = _port_mode(workload, port) if workload and port is not None else None
    if workload and port_mode is not None:
        steps.append(MtlsStep("port", PolicyRef.of(workload), port_mode, port))
    return tuple(steps)


def _levels_for(
    policies: Iterable[PeerAuthentication],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
) -> tuple[dict[Level, list[PeerAuthentication]], tuple[IgnoredPolicy, ...]]:
    """The policies that bear on the workload at each level, oldest first (the dict's
    order is the inheritance order: mesh, namespace, workload)."""
    levels: dict[Level, list[PeerAuthentication]] = {"mesh": [], "namespace": [], "workload": []}
    ignored: list[IgnoredPolicy] = []
    for policy in oldest_first(policies):
        level = _level_of(policy, namespace, labels, root_namespace)
        if level == "ignored":
            ignored.append(IgnoredPolicy(PolicyRef.of(policy), _ROOT_SELECTOR_IGNORED))
        elif level is not None:
            levels[level].append(policy)
    return levels, tuple(ignored)


def _level_of(
    policy: PeerAuthentication, namespace: str, labels: Mapping[str, str], root_namespace: str
) -> Level | Literal["ignored"] | None:
    home = policy.metadata.namespace
    selector = policy.spec.selector
    if not has_selector(selector):
        if home == root_namespace:
            return "mesh"
        return "namespace" if home == namespace else None
    if not selects(selector, labels) or home not in (namespace, root_namespace):
        return None
    return "ignored" if home == root_namespace else "workload"


def _mode(policy: PeerAuthentication) -> MtlsMode:
    return policy.spec.mtls.mode if policy.spec.mtls else "UNSET"


def _port_mode(policy: PeerAuthentication, port: int) -> MtlsMode | None:
    setting = (policy.spec.port_level_mtls or {}).get(str(port))
    return setting.mode if setting else None


@dataclass(frozen=True)
class PolicyConflict:
    """Several policies where Istio enforces one; ``policies`` oldest first, so
    ``policies[0]`` is the one in force and the rest have no effect."""

    code: Literal["multiple-mesh-wide", "multiple-namespace-wide", "selector-in-root-namespace"]
    namespace: str
    policies: tuple[PolicyRef, ...]
    message: str


def peer_authentication_conflicts(
    policies: Iterable[PeerAuthentication], *, root_namespace: str = DEFAULT_ROOT_NAMESPACE
) -> tuple[PolicyConflict, ...]:
    """What Istio warns about: more than one mesh-wide policy, more than one namespace-wide
    policy in a namespace (only the oldest counts), and selector policies in the root
    namespace (ignored). Ordered by namespace for stable output."""
    wide: dict[str, list[PeerAuthentication]] = {}
    conflicts: list[PolicyConflict] = []
    for policy in oldest_first(policies):
        home = policy.metadata.namespace
        if not has_selector(policy.spec.selector):
            wide.setdefault(home, []).append(policy)
        elif home == root_namespace:
            ref = PolicyRef.of(policy)
            conflicts.append(PolicyConflict(
                "selector-in-root-namespace", home, (ref,), f"{ref}: {_ROOT_SELECTOR_IGNORED}"
            ))
    for home, found in wide.items():
        if len(found) > 1:
            conflicts.append(_several_wide(home, found, home == root_namespace))
    return tuple(sorted(conflicts, key=lambda c: (c.namespace, c.code, c.policies)))


def _several_wide(
    namespace: str, found: list[PeerAuthentication], mesh: bool
) -> PolicyConflict:
    refs = tuple(PolicyRef.of(p) for p in found)
    scope = "mesh-wide" if mesh else "namespace-wide"
    names = ", ".join(r.name for r in refs)
    return PolicyConflict(
        "multiple-mesh-wide" if mesh else "multiple-namespace-wide",
        namespace,
        refs,
        f"{len(refs)} {scope} PeerAuthentications in namespace {namespace} ({names}): only "
        f"the oldest, {refs[0].name}, is enforced; delete or merge the others",
    )
