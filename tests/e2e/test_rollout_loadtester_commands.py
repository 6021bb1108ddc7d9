"""A blue-green rollout gated by an acceptance test that the built-in load tester runs as
a bash command on this host, end to end (control plane started with
``--loadtester-commands``, real Envoys and pods, real ``bash`` and ``curl``).

The Canary has the shape of Flagger's blue-green e2e spec (test/kubernetes/
test-deployment.sh): iterations, a confirm-rollout gate, a pre-rollout
``acceptance-test`` of ``type: bash`` running ``curl ... | grep ...`` against the canary
service, and a ``type: cmd`` hey load test; the intervals are short so it runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ControlPlane, read_endpoints, run_cli, wait_for
from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When

V2_ONLY = '"version": "v2"'


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane]) -> Iterator[Mesh]:
    """The mesh, with a load tester allowed to run commands."""
    m = Mesh(control_plane_factory("mesh", args=["--loadtester-commands"]))
    try:
        yield m
    finally:
        m.close()


def blue_green(seen: Path) -> dict[str, Any]:
    """Promotes only v2: its acceptance test greps the canary's answer for v2 (and keeps
    what it saw in ``seen``)."""
    body = canary(strategy="iterations: 3", threshold=2)
    body["spec"]["analysis"]["webhooks"] = [
        {"name": "gate", "type": "confirm-rollout",
         "url": "http://flagger-loadtester.test/gate/approve"},
        {"name": "acceptance-test", "type": "pre-rollout",
         "url": "http://flagger-loadtester.test/", "timeout": "10s",
         "metadata": {"type": "bash",
                      "cmd": f"curl -s http://myapp-canary.default:8080/ | tee -a {seen} "
                             f"| grep '{V2_ONLY}'"}},
        {"name": "load-test", "url": "http://flagger-loadtester.test/", "timeout": "5s",
         "metadata": {"type": "cmd",
                      "cmd": "hey -z 40s -q 15 -c 2 http://myapp-canary.default:8080/"}},
    ]
    return body


def since_last_revision(events: list[str]) -> list[str]:
    starts = [i for i, e in enumerate(events) if e.startswith("New revision detected")]
    return events[starts[-1]:]


def test_bash_acceptance_test_gates_a_blue_green_rollout(
    given: Given, when: When, then: Then, tmp_path: Path
) -> None:
    seen = tmp_path / "acceptance.log"
    given.rollout(blue_green(seen))
    # When v2 is released, the acceptance test passes (it reached the canary through the
    # mesh, from this host) and the rollout runs its iterations and promotes v2
    when.release("v2")
    then.rollout_phase("Succeeded", timeout=80)
    assert V2_ONLY in seen.read_text()
    events = since_last_revision(then.rollout_events())
    assert any("iteration 3/3" in e for e in events), events
    then.split_is({"v2": 20})

    # When v3 is released, its acceptance test exits 1: the analysis never starts, the
    # failures reach the threshold and v3 is rolled back; v2 keeps serving
    when.release("v3")
    # (the phase reads Succeeded until the new revision is seen: wait for Failed itself)
    failed = when.rollout_reaches(lambda b: b["phase"] == "Failed", "v3 to fail", timeout=60)
    events = since_last_revision([e["message"] for e in failed["events"]])
    assert not any(e.startswith("Starting canary analysis") for e in events), events
    assert any("acceptance-test failed" in e and "exit status 1" in e for e in events), events
    assert '"version": "v3"' in seen.read_text()  # the test did see v3, and refused it
    then.split_is({"v2": 20})


def test_up_flag_reaches_the_control_plane(tmp_path: Path) -> None:
    # `meshpilot up --loadtester-commands` starts the server with the flag, and the server
    # says in its log that commands run on this host
    state = tmp_path / "state"
    try:
        up = run_cli("up", "--loadtester-commands", state_dir=state)
        assert up.returncode == 0, up.stderr
        endpoints = read_endpoints(state)
        assert endpoints is not None
        argv = Path(f"/proc/{endpoints['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--loadtester-commands" in argv
        log = state / "controlplane.log"
        wait_for(lambda: "runs webhook commands" in log.read_text(), timeout=10,
                 message="the control plane to warn that commands run on this host")
    finally:
        assert run_cli("down", state_dir=state).returncode == 0
