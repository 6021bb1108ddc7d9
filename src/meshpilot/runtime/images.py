"""What to run for a container: its ``command``, or its ``image`` looked up in a map.

There is no container engine here, so an image name means nothing by itself. A
container that sets ``command`` runs that command (``args`` appended, as Kubernetes
does when both are set). A container without ``command`` needs its image in an *image
map*, a YAML file of ``image: command`` pairs::

    # <state_dir>/images.yaml (or the file named by $MESHPILOT_IMAGES)
    myorg/myapp:1.2: [python, -m, myapp]          # this tag only
    myorg/myapp: [python, -m, myapp, --legacy]    # any other tag of myorg/myapp
    ghcr.io/acme/web: "node server.js"            # a string is split like a shell would

An entry with a tag matches that tag; an entry without one matches every tag (and
digest) of the image. The container's ``args`` are appended to the mapped command.
Both files are read if present; entries in ``$MESHPILOT_IMAGES`` win. The files are
re-read when they change, so editing the map needs no restart.

A command whose first word is ``meshpilot`` runs the ``meshpilot`` script installed next
to the running Python (``sys.executable``), so examples work without PATH setup.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

__all__ = ["IMAGES_ENV", "ImageMap", "ImageMapError", "NoCommand", "resolve_command"]

IMAGES_ENV = "MESHPILOT_IMAGES"
IMAGES_FILE = "images.yaml"


class ImageMapError(ValueError):
    """An image map file that does not parse or has entries of the wrong shape."""


class NoCommand(LookupError):
    """A container with neither ``command`` nor a mapped image."""


def _strip_tag(image: str) -> str:
    """``registry:5000/org/app:1.2@sha256:...`` → ``registry:5000/org/app``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _parse_command(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        words = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        words = [str(v) for v in value]
    else:
        raise ImageMapError(f"{where}: a command must be a list of strings or a string")
    if not words:
        raise ImageMapError(f"{where}: the command is empty")
    return words


class ImageMap:
    """Image → command, from YAML files (missing files are simply empty)."""

    def __init__(self, paths: Sequence[Path] = (), entries: Mapping[str, Sequence[str]] | None
                 = None) -> None:
        self.paths = [Path(p) for p in paths]
        self._static = {k: list(v) for k, v in (entries or {}).items()}
        self._cache: dict[Path, tuple[float, dict[str, list[str]]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls, state_dir: Path | None = None) -> ImageMap:
        """``<state_dir>/images.yaml`` and ``$MESHPILOT_IMAGES`` (later wins)."""
        paths: list[Path] = []
        if state_dir is not None:
            paths.append(Path(state_dir) / IMAGES_FILE)
        env = os.environ.get(IMAGES_ENV)
        if env:
            paths.append(Path(env).expanduser())
        return cls(paths)

    def describe(self) -> str:
        """Where users should map an image (for error messages)."""
        if not self.paths:
            return f"an image map file (set ${IMAGES_ENV})"
        return " or ".join(str(p) for p in self.paths)

    def entries(self) -> dict[str, list[str]]:
        merged = dict(self._static)
        for path in self.paths:
            merged.update(self._load(path))
        return merged

    def lookup(self, image: str) -> list[str] | None:
        """The command for ``image``: exact match first, then the untagged name."""
        entries = self.entries()
        if image in entries:
            return list(entries[image])
        bare = _strip_tag(image)
        if bare in entries:
            return list(entries[bare])
        return None

    def _load(self, path: Path) -> dict[str, list[str]]:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ImageMapError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise ImageMapError(f"{path}: expected a mapping of image: command")
        parsed = {
            str(image): _parse_command(cmd, f"{path}: image {image}") for image, cmd in doc.items()
        }
        with self._lock:
            self._cache[path] = (mtime, parsed)
        return parsed


def _meshpilot_script() -> str:
    candidate = Path(sys.executable).parent / "meshpilot"
    return str(candidate) if candidate.exists() else "meshpilot"


def resolve_command(
    image: str | None, command: Sequence[str] | None, args: Sequence[str] | None,
    images: ImageMap,
) -> list[str]:
    """The argv for a container; raises :class:`NoCommand` with an actionable message."""
    if command:
        argv = [*command, *(args or ())]
    else:
        mapped = images.lookup(image) if image else None
        if mapped is None:
            what = f"image {image}" if image else "a container with no image"
            raise NoCommand(
                f"{what} has no command: set `command` or map the image in "
                f"{images.describe()}"
            )
        argv = [*mapped, *(args or ())]
    if argv[0] == "meshpilot":
        argv[0] = _meshpilot_script()
    return argv
