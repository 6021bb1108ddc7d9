"""Canary webhooks to the built-in load tester that it would not run, found at apply
rather than as a failed hook in the middle of a rollout.

The tester is the one a webhook URL with the host ``flagger-loadtester[.NS]`` reaches
(:mod:`meshpilot.api.flagger_tester`); only its task endpoint (``/``) is judged, not
its gates, and not ``event`` hooks, whose metadata is replaced by the event's.

- MP0055 (error): a ``metadata.type`` it never runs: Flagger's ``helm``, ``helmv3``,
  ``kubectl``, ``concord``, ``ngrinder``, or a type Flagger's tester does not know either.
- MP0056 (error): no ``metadata.cmd``; both testers answer such a task with 400.
- MP2035 (warning): a command other than ``hey`` runs on the control plane's host, which
  the tester does only when started with ``--loadtester-commands``. A rule sees the
  object alone, not how the control plane was started (``analyze`` runs without one), so
  this is said whether commands are on or not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api import flagger_tester as tester
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping


def canary_findings(body: Mapping[str, Any]) -> list[Finding]:
    analysis = as_mapping(as_mapping(body.get("spec")).get("analysis"))
    return [finding for i, hook in enumerate(as_list(analysis.get("webhooks")))
            for finding in _hook_findings(as_mapping(hook), ("spec", "analysis", "webhooks", i))]


def _hook_findings(hook: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    url = hook.get("url")
    if (not isinstance(url, str) or hook.get("type") == "event"
            or not tester.is_builtin_tester(url) or not tester.is_task_endpoint(url)):
        return
    metadata = {str(k): str(v) for k, v in as_mapping(hook.get("metadata")).items()}
    kind = tester.task_type(metadata)
    if kind not in tester.RUNS:
        yield Finding(codes.TESTER_TASK_TYPE, (*path, "metadata", "type"), _type_message(kind))
        return
    cmd = metadata.get("cmd", "")
    if not cmd.strip():
        yield Finding(codes.TESTER_NO_COMMAND, (*path, "metadata", "cmd"),
                      f"the load tester at {url} runs metadata.cmd and there is none: the "
                      "hook would fail (400); write e.g. cmd: hey -z 1m -q 10 -c 2 "
                      "http://NAME-canary.NAMESPACE:PORT/")
    elif not tester.is_builtin_command(cmd):
        yield Finding(codes.TESTER_HOST_COMMAND, (*path, "metadata", "cmd"),
                      f"{cmd!r} is not hey: the built-in load tester runs it on the control "
                      "plane's host, as its user, only if the control plane was started "
                      f"with `meshpilot up {tester.ENABLE_FLAG}`; otherwise the hook fails "
                      "(403)")


def _type_message(kind: str) -> str:
    runs = "the built-in load tester runs the types cmd (the default) and bash"
    if kind in tester.FLAGGER_ONLY:
        return (f"task type {kind!r} is Flagger's tester's only; {runs}: run the command as "
                f"type: bash (with `meshpilot up {tester.ENABLE_FLAG}`), or point the "
                "hook at a Flagger tester you run")
    return f"unknown task type {kind!r} (Flagger's tester refuses it too); {runs}"
