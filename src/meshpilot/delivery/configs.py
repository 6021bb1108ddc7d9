"""ConfigMaps and Secrets as part of a revision, as Flagger's config tracker has them.

A pod template reads ConfigMaps and Secrets by name (``env[].valueFrom``, ``envFrom``,
``configMap``/``secret``/``projected`` volumes). If the primary read the same objects as
the canary, editing one would change what the primary serves with no analysis at all.
So, as Flagger does:

- the data of every tracked object the target reads is part of the revision: changing
  it is a new revision, analysed like a new image;
- the primary reads copies named ``NAME-primary``, made from the target's objects when
  the primary is created and when a revision is promoted, and left alone in between.

Tracked: every ConfigMap, and Secrets of the types Flagger tracks (Opaque, basic-auth,
ssh-auth, tls), unless annotated ``flagger.app/config-tracking: disabled``. Objects that
do not exist are not tracked (the pods wait for them, as the runtime makes them).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ConfigKey = tuple[str, str]
"""(kind, name): ``("ConfigMap", "app-config")`` or ``("Secret", "app-token")``."""

PRIMARY_SUFFIX = "-primary"
TRACKING_ANNOTATION = "flagger.app/config-tracking"
TRACKED_SECRET_TYPES = frozenset({"Opaque", "kubernetes.io/basic-auth",
                                  "kubernetes.io/ssh-auth", "kubernetes.io/tls"})
_COPIED_FIELDS = ("data", "binaryData", "stringData", "type", "immutable")

Ref = tuple[Mapping[str, Any], str, str]
"""A reference in a template: (the mapping holding the name, its name field, kind)."""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# Where a pod template names a ConfigMap or a Secret: (field of the ConfigMap's reference,
# field of the Secret's, the field holding the name in the Secret's; a ConfigMap's is
# always ``name``), in each place Kubernetes allows one.
_VOLUME = ("configMap", "secret", "secretName")
_PROJECTED = ("configMap", "secret", "name")
_ENV_KEY = ("configMapKeyRef", "secretKeyRef", "name")
_ENV_FROM = ("configMapRef", "secretRef", "name")


def _pair(holder: Mapping[str, Any], fields: tuple[str, str, str]) -> Iterator[Ref]:
    """The ConfigMap and the Secret ``holder`` names through ``fields`` (see above)."""
    config_map, secret, secret_name = fields
    holder = _as_map(holder)
    if holder.get(config_map):
        yield holder[config_map], "name", "ConfigMap"
    if holder.get(secret):
        yield holder[secret], secret_name, "Secret"


def _volume_refs(pod: Mapping[str, Any]) -> Iterator[Ref]:
    for volume in _as_list(pod.get("volumes")):
        yield from _pair(volume, _VOLUME)
        for source in _as_list(_as_map(_as_map(volume).get("projected")).get("sources")):
            yield from _pair(source, _PROJECTED)


def _container_refs(pod: Mapping[str, Any]) -> Iterator[Ref]:
    for field in ("initContainers", "containers"):
        for container in _as_list(pod.get(field)):
            container = _as_map(container)
            for env in _as_list(container.get("env")):
                yield from _pair(_as_map(env).get("valueFrom"), _ENV_KEY)
            for source in _as_list(container.get("envFrom")):
                yield from _pair(source, _ENV_FROM)


def _refs(template: Mapping[str, Any]) -> Iterator[Ref]:
    pod = _as_map(_as_map(template).get("spec"))
    yield from _volume_refs(pod)
    yield from _container_refs(pod)


def referenced(template: Mapping[str, Any]) -> set[ConfigKey]:
    """Every (kind, name) the pod template reads."""
    return {(kind, str(holder[field])) for holder, field, kind in _refs(template)
            if isinstance(holder.get(field), str)}


def tracked(body: Mapping[str, Any] | None) -> bool:
    """Whether a ConfigMap or Secret body is part of the revision (see the module)."""
    if body is None:
        return False
    annotations = _as_map(_as_map(body.get("metadata")).get("annotations"))
    if str(annotations.get(TRACKING_ANNOTATION, "")).startswith("disable"):
        return False
    return body.get("kind") != "Secret" or body.get("type", "Opaque") in TRACKED_SECRET_TYPES


def digest(body: Mapping[str, Any]) -> str:
    """A short hash of what an object holds (not its metadata)."""
    content = {f: body.get(f) for f in _COPIED_FIELDS if body.get(f) is not None}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checksums(configs: Mapping[ConfigKey, Mapping[str, Any]]) -> dict[str, str]:
    """``"ConfigMap/name"`` → digest, as Flagger's ``status.trackedConfigs``."""
    return {f"{kind}/{name}": digest(body) for (kind, name), body in sorted(configs.items())}


def with_primary_names(template: Mapping[str, Any],
                       names: set[ConfigKey]) -> dict[str, Any]:
    """A copy of ``template`` reading ``NAME-primary`` for each of ``names``."""
    out = copy.deepcopy(dict(template))
    for holder, field, kind in _refs(out):
        name = holder.get(field)
        if isinstance(name, str) and (kind, name) in names:
            holder[field] = name + PRIMARY_SUFFIX  # type: ignore[index]
    return out


def primary_copies(configs: Mapping[ConfigKey, Mapping[str, Any]],
                   meta: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``NAME-primary`` copies of ``configs``, their metadata from ``meta(name)``."""
    out = []
    for (kind, name), body in sorted(configs.items()):
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind,
                               "metadata": meta(name + PRIMARY_SUFFIX)}
        obj.update({f: copy.deepcopy(body[f]) for f in _COPIED_FIELDS if f in body})
        out.append(obj)
    return out
