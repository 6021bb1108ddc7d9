"""Canary webhooks the built-in load tester would not run are found at apply: MP0055 and
MP0056 refuse them, MP2035 warns that a command would run on the control plane's host."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import run_cli

from meshpilot.validation import Diagnostic, Plan, plan_apply

CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: test}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
  analysis:
    interval: 10s
    iterations: 5
    webhooks:
    - name: gate
      type: confirm-rollout
      url: http://flagger-loadtester.test/gate/approve
    - name: hook
      type: {hook_type}
      url: {url}
      timeout: 30s
{metadata}
"""


def plan(metadata: str, url: str = "http://flagger-loadtester.test/",
         hook_type: str = "pre-rollout") -> Plan:
    block = "\n".join("        " + line for line in metadata.splitlines())
    text = CANARY.format(url=url, hook_type=hook_type,
                         metadata=("      metadata:\n" + block) if metadata else "")
    return plan_apply([("canary.yaml", text)], [])


def findings(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics]


def one(p: Plan) -> Diagnostic:
    assert len(p.diagnostics) == 1, [d.format() for d in p.diagnostics]
    return p.diagnostics[0]


@pytest.mark.parametrize("kind", ["helm", "helmv3", "kubectl", "concord", "ngrinder"])
def test_flagger_only_task_types_are_refused(kind: str) -> None:
    p = plan(f"type: {kind}\ncmd: upgrade -i podinfo ./chart")
    d = one(p)
    assert not p.ok and d.code == "MP0055"
    assert d.path == "spec.analysis.webhooks[1].metadata.type"
    assert (d.line, d.column) == (19, 9) and "--loadtester-commands" in d.message


def test_unknown_task_type_is_refused() -> None:
    d = one(plan("type: shell\ncmd: echo hi"))
    assert d.code == "MP0055" and "unknown task type 'shell'" in d.message


def test_task_without_cmd_is_refused() -> None:
    assert findings(plan("type: bash")) == [
        ("MP0056", "spec.analysis.webhooks[1].metadata.cmd")]
    assert findings(plan("")) == [("MP0056", "spec.analysis.webhooks[1].metadata.cmd")]


@pytest.mark.parametrize("kind", ["bash", "cmd", None])
def test_a_command_on_this_host_is_warned_about(kind: str | None) -> None:
    type_line = f"type: {kind}\n" if kind else ""
    p = plan(type_line + "cmd: \"curl -sd 'test' http://podinfo-canary:9898/token | grep token\"")
    d = one(p)
    assert p.ok and d.code == "MP2035" and d.severity.value == "warning"
    assert d.path == "spec.analysis.webhooks[1].metadata.cmd"
    assert "meshpilot up --loadtester-commands" in d.message and "403" in d.message


@pytest.mark.parametrize("kind", ["bash", "cmd", None])
def test_hey_runs_built_in_and_is_not_warned_about(kind: str | None) -> None:
    type_line = f"type: {kind}\n" if kind else ""
    assert findings(plan(type_line + "cmd: hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/")
                    ) == []


@pytest.mark.parametrize("url", [
    "http://my-tester.test/",                      # not the built-in tester
    "http://flagger-loadtester.test/gate/check",   # a gate, not a task
])
def test_other_urls_are_not_judged(url: str) -> None:
    assert findings(plan("type: helm\ncmd: x", url=url)) == []


def test_event_hooks_are_not_judged() -> None:
    # Flagger replaces an event hook's metadata with the event's
    assert findings(plan("type: helm", hook_type="event")) == []


def test_any_tester_namespace_and_meshpilot_host_are_judged() -> None:
    for url in ("http://flagger-loadtester/", "http://flagger-loadtester.x.svc:80",
                "http://meshpilot-loadtester.test/"):
        assert findings(plan("type: helm\ncmd: x", url=url))[0][0] == "MP0055", url


def test_analyze_shows_them(tmp_path: Path) -> None:
    # offline: no control plane, so the command is warned about either way
    warned = tmp_path / "warned.yaml"
    warned.write_text(CANARY.format(url="http://flagger-loadtester.test/",
                                    hook_type="pre-rollout",
                                    metadata="      metadata: {type: bash, cmd: 'exit 1'}"))
    r = run_cli("analyze", "-f", str(warned), state_dir=tmp_path / "state")
    assert r.returncode == 0 and "MP2035" in r.stderr + r.stdout, r
    refused = tmp_path / "refused.yaml"
    refused.write_text(warned.read_text().replace("type: bash", "type: helm"))
    r = run_cli("analyze", "-f", str(refused), state_dir=tmp_path / "state")
    assert r.returncode == 1 and "MP0055" in r.stderr, r
