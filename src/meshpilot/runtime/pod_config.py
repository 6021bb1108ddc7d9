"""What a pod reads from ConfigMaps and Secrets: environment variables and files.

A pod is a set of local processes, which cannot be given a filesystem root of their
own. So a mounted volume is a directory the runtime writes inside the pod's directory
(``<run dir>/pods/<pod>.d/``), and each container gets a *root* of its own there:
``volumeMounts[].mountPath`` ``/etc/config`` becomes ``<root>/etc/config``, a symbolic
link to the volume (or, with ``subPath``, to the file or directory inside it). The root
is passed in ``MESHPILOT_POD_ROOT``: an app opens
``os.environ.get("MESHPILOT_POD_ROOT", "") + "/etc/config/app.conf"``, which is the same
file in Kubernetes, where the variable is unset. Nothing rewrites the paths an app uses
on its own; ``$(MESHPILOT_POD_ROOT)`` may also be written in ``command`` and ``args``.

Secret files are written 0600 (whatever ``defaultMode`` asks: the pod's processes run as
the user that runs meshpilot), ConfigMap files with ``defaultMode``/``mode`` (0644 when
unset). Secret values are never logged: messages name objects and keys only.

Every function here is a function of the pod template and the ConfigMap and Secret
contents (``ConfigData``), except :func:`write_volumes`, which writes the files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from meshpilot.api.kubernetes import (
    Container,
    EnvVar,
    KeySelector,
    KeyToPath,
    PodSpec,
    Volume,
)

__all__ = [
    "POD_ROOT_ENV",
    "ConfigData",
    "ConfigRef",
    "config_digest",
    "config_env",
    "missing_config",
    "references",
    "write_volumes",
]

POD_ROOT_ENV = "MESHPILOT_POD_ROOT"
"""Set in every container that has volume mounts: where its ``mountPath``s are."""

CONFIG_MAP = "ConfigMap"
SECRET = "Secret"

ConfigRef = tuple[str, str]
"""(kind, name): a ConfigMap or Secret in the pod's namespace."""

ConfigData = Mapping[tuple[str, str, str], Mapping[str, bytes]]
"""(kind, namespace, name) -> every key with its value, for ConfigMaps and Secrets."""

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


@dataclass(frozen=True)
class _Use:
    """One use of a ConfigMap or Secret: the whole object, or one key of it."""

    ref: ConfigRef
    key: str | None
    optional: bool


def _key_use(kind: str, sel: KeySelector) -> _Use:
    return _Use((kind, sel.name), sel.key, bool(sel.optional))


def _container_uses(c: Container) -> list[_Use]:
    uses = []
    for src in c.env_from or ():
        if src.config_map_ref is not None:
            uses.append(_Use((CONFIG_MAP, src.config_map_ref.name), None,
                             bool(src.config_map_ref.optional)))
        if src.secret_ref is not None:
            uses.append(_Use((SECRET, src.secret_ref.name), None, bool(src.secret_ref.optional)))
    for var in c.env or ():
        vf = var.value_from
        if vf is not None and vf.config_map_key_ref is not None:
            uses.append(_key_use(CONFIG_MAP, vf.config_map_key_ref))
        if vf is not None and vf.secret_key_ref is not None:
            uses.append(_key_use(SECRET, vf.secret_key_ref))
    return uses


def _volume_uses(v: Volume) -> list[_Use]:
    if v.config_map is not None:
        src, kind, name = v.config_map, CONFIG_MAP, v.config_map.name
    elif v.secret is not None:
        src, kind, name = v.secret, SECRET, v.secret.secret_name
    else:
        return []
    optional = bool(src.optional)
    if src.items:
        return [_Use((kind, name), item.key, optional) for item in src.items]
    return [_Use((kind, name), None, optional)]


def _uses(spec: PodSpec) -> list[_Use]:
    uses = [u for c in spec.containers for u in _container_uses(c)]
    # a volume no container mounts is still made in Kubernetes: its object must exist
    uses += [u for v in spec.volumes or () for u in _volume_uses(v)]
    return uses


def references(spec: PodSpec) -> tuple[ConfigRef, ...]:
    """Every ConfigMap and Secret the pod template reads, sorted."""
    return tuple(sorted({u.ref for u in _uses(spec)}))


def config_digest(spec: PodSpec, namespace: str, configs: ConfigData) -> str:
    """A digest of what the pod reads from ConfigMaps and Secrets ("" when nothing): it
    changes when one of them is created, changed or deleted, which rolls the pods."""
    refs = references(spec)
    if not refs:
        return ""
    h = hashlib.sha256()
    for kind, name in refs:
        data = configs.get((kind, namespace, name))
        h.update(f"{kind}\0{name}\0".encode())
        if data is None:
            h.update(b"\1missing")
            continue
        for key in sorted(data):
            value = data[key]
            h.update(f"{key}\0{len(value)}\0".encode())
            h.update(value)
    return h.hexdigest()


def missing_config(spec: PodSpec, namespace: str, configs: ConfigData) -> str:
    """Why the pod cannot start (Kubernetes' CreateContainerConfigError), or "".

    A non-optional reference to a ConfigMap or Secret that does not exist, or to a key it
    does not hold, keeps every container from starting until it is applied.
    """
    problems: list[str] = []
    for use in _uses(spec):
        if use.optional:
            continue
        kind, name = use.ref
        data = configs.get((kind, namespace, name))
        if data is None:
            problems.append(f"{kind.lower()} {name!r} not found")
        elif use.key is not None and use.key not in data:
            problems.append(f"key {use.key!r} not found in {kind} {namespace}/{name}")
    return "; ".join(dict.fromkeys(problems))


def _text(value: bytes) -> str:
    """An environment value: bytes that are not UTF-8 pass through unchanged
    (``surrogateescape``, as Python encodes the environment it is given)."""
    return value.decode("utf-8", "surrogateescape")


def _key_value(kind: str, sel: KeySelector, namespace: str, configs: ConfigData) -> str | None:
    data = configs.get((kind, namespace, sel.name)) or {}
    value = data.get(sel.key)
    return None if value is None else _text(value)


def config_env(c: Container, namespace: str, configs: ConfigData) -> dict[str, str]:
    """The variables ``envFrom`` gives the container (keys that are not valid variable
    names are skipped, as Kubernetes skips them); missing optional objects give none."""
    out: dict[str, str] = {}
    for src in c.env_from or ():
        ref = src.config_map_ref or src.secret_ref
        kind = CONFIG_MAP if src.config_map_ref is not None else SECRET
        assert ref is not None  # the model asks for exactly one
        data = configs.get((kind, namespace, ref.name)) or {}
        for key, value in data.items():
            name = f"{src.prefix or ''}{key}"
            if _ENV_NAME.match(name):
                out[name] = _text(value)
    return out


def env_value(var: EnvVar, namespace: str, configs: ConfigData) -> str | None:
    """The value of a ``configMapKeyRef`` or ``secretKeyRef`` variable, None when it is
    of another kind or its (optional) source is missing."""
    vf = var.value_from
    if vf is None:
        return None
    if vf.config_map_key_ref is not None:
        return _key_value(CONFIG_MAP, vf.config_map_key_ref, namespace, configs)
    if vf.secret_key_ref is not None:
        return _key_value(SECRET, vf.secret_key_ref, namespace, configs)
    return None


# --- volumes on disk ------------------------------------------------------------------------


def _safe_relative(path: str) -> Path:
    """``path`` as a relative path that stays inside its directory (validation refuses
    others; this is the runtime's own guard)."""
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"path {path!r} must be relative and must not contain '..'")
    return rel


def _write_file(path: Path, value: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, value)
    finally:
        os.close(fd)


def _files(items: Iterable[KeyToPath] | None, data: Mapping[str, bytes],
           default: int) -> list[tuple[str, bytes, int]]:
    """(relative path, value, mode) of every file of a ConfigMap or Secret volume."""
    if not items:
        return [(key, value, default) for key, value in sorted(data.items())]
    return [(item.path, data[item.key], default if item.mode is None else item.mode)
            for item in items if item.key in data]


def _fill_volume(v: Volume, target: Path, namespace: str, configs: ConfigData) -> None:
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    if v.config_map is not None:
        src = v.config_map
        data = configs.get((CONFIG_MAP, namespace, src.name)) or {}
        default = 0o644 if src.default_mode is None else src.default_mode
        cap = 0o777
    elif v.secret is not None:
        data = configs.get((SECRET, namespace, v.secret.secret_name)) or {}
        src, default, cap = v.secret, 0o600, 0o600  # never readable by others
    else:
        return  # emptyDir: the empty directory is the volume
    for rel, value, mode in _files(src.items, data, default):
        _write_file(target / _safe_relative(rel), value, mode & cap)


def write_volumes(spec: PodSpec, namespace: str, configs: ConfigData,
                  pod_dir: Path) -> dict[str, Path]:
    """Write the pod's volumes under ``pod_dir`` and link each container's mounts into a
    root of its own; returns container name -> root (containers with mounts only).

    Volumes of other types (hostPath, persistentVolumeClaim, ...) are not made: a mount
    of one is a link to nothing, and the validator warns about it (MP2017).
    """
    pod_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(pod_dir, 0o700)
    volumes: dict[str, Path] = {}
    for v in spec.volumes or ():
        if v.config_map is None and v.secret is None and v.empty_dir is None:
            continue
        target = pod_dir / "volumes" / v.name
        _fill_volume(v, target, namespace, configs)
        volumes[v.name] = target
    roots: dict[str, Path] = {}
    for c in spec.containers:
        if not c.volume_mounts:
            continue
        root = pod_dir / "roots" / c.name
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for m in c.volume_mounts:
            source = volumes.get(m.name)
            if source is None:
                continue
            if m.sub_path:
                source = source / _safe_relative(m.sub_path)
            if not m.mount_path.strip("/"):
                continue  # "/" itself: the validator refuses it
            link = root / _safe_relative(m.mount_path.strip("/"))
            link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if link.is_symlink() or link.exists():
                continue  # a mount inside another mount: the outer one wins
            link.symlink_to(source)
        roots[c.name] = root
    return roots


def remove_pod_dir(pod_dir: Path) -> None:
    """Delete what :func:`write_volumes` wrote (Secret files included)."""
    shutil.rmtree(pod_dir, ignore_errors=True)
