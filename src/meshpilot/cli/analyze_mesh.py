"""The mesh config that ``meshpilot analyze -f`` judges the files against, offline.

Some findings need the mesh config a control plane runs with, not only the objects: a
WorkloadEntry or WorkloadGroup naming a network ``meshNetworks`` does not list is MP2032
at apply, describe and ``/diagnostics``. Offline, ``analyze`` finds that mesh config
where a user keeps it, as ``istioctl analyze`` takes ``--meshConfigFile``:

- given by ``analyze --mesh-config FILE`` (also spelt ``--meshConfigFile``), or
- among the ``-f`` files: a file that is one YAML object with no ``apiVersion`` or
  ``kind`` and with a meshConfig field at its top (``meshNetworks``,
  ``outboundTrafficPolicy``, …) is read as the mesh config, not as an object.

The mesh config is checked as ``up`` checks it (its errors and warnings, at their lines).
Two mesh configs are refused: which one would the control plane run with?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshpilot.api.loader import LoadError, load_text
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.validation import codes
from meshpilot.validation.diagnostics import Diagnostic
from meshpilot.validation.mesh_config import (
    ISTIO_NOT_APPLIED,
    KNOWN,
    MeshConfigError,
    parse_mesh_config,
)
from meshpilot.validation.network_names import check_network_names
from meshpilot.validation.plan import Plan
from meshpilot.validation.state_object import StateObject

Source = tuple[str, str]
TOP_FIELDS = frozenset({*KNOWN[()], *ISTIO_NOT_APPLIED})
"""The fields that make a document a mesh config rather than an object."""


@dataclass
class MeshConfigFound:
    """The mesh config to judge against (None: none given), where it came from, and
    what was found reading it."""

    config: MeshConfig | None = None
    file: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)


def is_mesh_config(source: Source) -> bool:
    """Whether ``source`` is a mesh config file (see the module), not objects."""
    try:
        docs = load_text(source[1], source[0])
    except LoadError:
        return False  # the plan says why it does not parse
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        return False
    data = docs[0].data
    return "kind" not in data and "apiVersion" not in data and bool(TOP_FIELDS & set(data))


def split(sources: Sequence[Source], given: Source | None
          ) -> tuple[list[Source], MeshConfigFound]:
    """The object files, and the mesh config read from ``given`` or from the one mesh
    config file among ``sources``."""
    configs = [s for s in sources if is_mesh_config(s)]
    objects = [s for s in sources if not is_mesh_config(s)]
    if given is not None:
        configs.insert(0, given)
    if not configs:
        return objects, MeshConfigFound()
    if len(configs) > 1:
        names = ", ".join(name for name, _ in configs)
        return objects, MeshConfigFound(file=configs[0][0], diagnostics=[Diagnostic.of(
            codes.MESH_CONFIG_FILE, f"more than one mesh config ({names}): a control plane "
            "runs with one; give one with --mesh-config or among the files",
            file=configs[1][0])])
    name, text = configs[0]
    try:
        config, warnings = parse_mesh_config(text, name)
    except MeshConfigError as exc:
        return objects, MeshConfigFound(file=name, diagnostics=exc.diagnostics)
    return objects, MeshConfigFound(config, name, warnings)


def judge(plan: Plan, found: MeshConfigFound) -> None:
    """Add to ``plan`` what reading the mesh config found, and the findings that need
    it about the planned objects (MP2032)."""
    plan.diagnostics.extend(found.diagnostics)
    if found.config is None:
        return
    objects = [StateObject(o.key, o.body, o.source, changed=True) for o in plan.objects]
    plan.diagnostics.extend(check_network_names(objects, found.config.networks))
