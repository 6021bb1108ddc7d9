"""Flagger's load tester as a webhook target: which URLs reach meshpilot's built-in tester,
and which of the tester's task types that tester runs.

Both sides read this one module, so they cannot disagree: the control plane routes the
URLs to the built-in tester and the tester runs the tasks (``meshpilot.delivery``), and
validation refuses or warns about the hooks it would not run (``meshpilot.validation``).

Flagger's tester takes a task on ``POST /`` with ``metadata.type`` (``cmd`` when absent)
and ``metadata.cmd``. Of its types the built-in tester runs ``cmd`` and ``bash``: a
command whose first word is ``hey`` by its built-in load generator, anything else as a
shell command on the control plane's host, and that only when ``meshpilot up
--loadtester-commands`` allowed it. ``helm``, ``helmv3``, ``kubectl``, ``concord`` and
``ngrinder`` are Flagger's and are never run here.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from urllib.parse import urlsplit

HOSTS = ("flagger-loadtester", "meshpilot-loadtester")
"""Webhook hosts (any namespace or domain suffix) sent to the built-in tester."""

CMD = "cmd"
"""Flagger's default task type: the command runs in the background, once at a time."""
BASH = "bash"
"""The command runs to completion before the tester answers."""
RUNS = frozenset({CMD, BASH})
FLAGGER_ONLY = frozenset({"helm", "helmv3", "kubectl", "concord", "ngrinder"})
"""Task types Flagger's tester has and the built-in one does not."""

ENABLE_FLAG = "--loadtester-commands"
"""The ``meshpilot up`` (and server) flag that lets the tester run shell commands."""


def is_builtin_tester(url: str) -> bool:
    """Whether a webhook to ``url`` is sent to the built-in tester."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.startswith(h + ".") for h in HOSTS)


def is_task_endpoint(url: str) -> bool:
    """Whether ``url`` is the tester's task endpoint (``/``), not a gate."""
    return urlsplit(url).path in ("", "/")


def task_type(metadata: Mapping[str, str]) -> str:
    """The task type as Flagger reads it: ``cmd`` when ``type`` is absent."""
    return metadata.get("type", CMD)


def is_builtin_command(cmd: str) -> bool:
    """Whether ``cmd`` runs on the built-in load generator (its first word is ``hey``),
    not as a shell command."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return False
    return bool(words) and words[0].rsplit("/", 1)[-1] == "hey"
