"""The control plane's root rotation service and its API: each step saved before it is
pushed, refused (with a stable code, changing nothing) when the input is bad or the
proxies are not ready, and resumed by a control plane started on the same state dir.

The proxies are stood in for by ``converge`` (whether every proxy acknowledged the
latest config) and by calling ``current`` as a rebuild does; the e2e test
``tests/e2e/test_security_root_rotation.py`` runs the same steps with real Envoys.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.unit.security_pki import openssl_key, plugged_ca_directory

from meshpilot.cli.ca import status_view
from meshpilot.security.options import SecurityOptions
from meshpilot.security.root_rotation import Phase, Refusal, RotationRefused
from meshpilot.security.workload_certs import CredentialSubject
from meshpilot.server.ca_api import CaAPI
from meshpilot.server.ca_rotation import CaRotation

NODES = [CredentialSubject(f"node-{i}", "shop", "web") for i in range(3)]


class Proxies:
    """What ``converge`` answers: whether every proxy acknowledged the latest config."""

    def __init__(self) -> None:
        self.synced = True
        self.asked = 0
        self.woken = 0

    def converge(self, timeout: float) -> bool:
        self.asked += 1
        return self.synced

    def wake(self) -> None:
        self.woken += 1


def opened(state: Path, proxies: Proxies, **options: Any) -> CaRotation:
    rotation = CaRotation.open(state, SecurityOptions(**options), proxies.converge,
                               proxies.wake)
    rotation.certificates.current(NODES)  # the proxies have their certificates
    return rotation


def refused(step: Any, *args: Any, **kwargs: Any) -> RotationRefused:
    with pytest.raises(RotationRefused) as exc:
        step(*args, **kwargs)
    return exc.value


def roles(status: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["role"], r["workloadCertificates"]) for r in status["roots"]]


def test_the_whole_rotation_and_what_status_shows_at_each_step(tmp_path: Path) -> None:
    proxies = Proxies()
    rotation = opened(tmp_path, proxies)
    first = rotation.status()
    assert first["phase"] == "Steady" and roles(first) == [("issuing", 3)]
    assert first["roots"][0]["pem"].startswith("-----BEGIN CERTIFICATE-----")

    trusted = rotation.trust()
    assert trusted["phase"] == "Trusted" and trusted["synced"]
    assert roles(trusted) == [("issuing", 3), ("pending", 0)]
    assert trusted["pending"]["subject"].startswith("CN=meshpilot root CA 20")

    switched = rotation.switch(spread=timedelta(0))
    assert switched["phase"] == "Switched"
    assert proxies.woken == 1  # the rebuild loop looks again at when re-issues are due
    assert switched["workloadCertificates"]["awaitingReissue"] == 3
    assert refused(rotation.retire).refusal is Refusal.ROOT_IN_USE
    rotation.certificates.current(NODES)  # the rebuild that re-issues them
    assert roles(rotation.status()) == [("old", 0), ("issuing", 3)]

    retired = rotation.retire()
    assert retired["phase"] == "Steady" and roles(retired) == [("issuing", 3)]
    assert retired["roots"][0]["fingerprint"] == trusted["pending"]["root"]
    assert "retired CN=meshpilot root CA,O=cluster.local" in retired["message"]


def test_a_step_the_proxies_are_not_ready_for_changes_nothing(tmp_path: Path) -> None:
    proxies = Proxies()
    rotation = opened(tmp_path, proxies)
    rotation.trust()
    saved = (tmp_path / "ca-rotation" / "rotation.json").read_text()
    proxies.synced = False
    assert refused(rotation.switch).refusal is Refusal.NOT_PROPAGATED
    assert rotation.rotation.phase is Phase.TRUSTED
    assert (tmp_path / "ca-rotation" / "rotation.json").read_text() == saved
    assert rotation.certificates.awaiting_reissue() == (0, None)
    proxies.synced = True
    rotation.switch()
    assert rotation.rotation.phase is Phase.SWITCHED


def test_a_restarted_control_plane_resumes_the_rotation(tmp_path: Path) -> None:
    proxies = Proxies()
    before = opened(tmp_path, proxies)
    pending = before.trust()["pending"]
    again = opened(tmp_path, proxies)
    assert again.status()["phase"] == "Trusted"
    assert again.status()["pending"]["fingerprint"] == pending["fingerprint"]
    again.switch()
    third = opened(tmp_path, proxies)  # every credential issued afresh, from the new CA
    status = third.status()
    assert status["issuing"]["fingerprint"] == pending["fingerprint"]
    assert roles(status) == [("old", 0), ("issuing", 3)]
    third.retire()
    assert opened(tmp_path, proxies).status()["phase"] == "Steady"


def test_ca_dir_at_restart_does_not_override_a_saved_rotation(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugged = plugged_ca_directory(tmp_path / "plugged")
    proxies = Proxies()
    opened(tmp_path / "state", proxies).trust()
    with caplog.at_level(logging.WARNING):
        again = opened(tmp_path / "state", proxies, ca_dir=plugged)
    assert "Plugged" not in again.status()["issuing"]["subject"]
    assert any("--ca-dir" in r.message and "is not used" in r.message for r in caplog.records)


def test_bad_ca_directories_are_named_and_change_nothing(tmp_path: Path) -> None:
    proxies = Proxies()
    rotation = opened(tmp_path / "state", proxies)
    missing = refused(rotation.trust, tmp_path / "nowhere")
    assert missing.refusal is Refusal.CA_FILES and missing.file == str(tmp_path / "nowhere")

    partial = plugged_ca_directory(tmp_path / "partial")
    (partial / "cert-chain.pem").unlink()
    gone = refused(rotation.trust, partial)
    assert gone.refusal is Refusal.CA_FILES and gone.file == str(partial / "cert-chain.pem")
    assert "cannot be read" in gone.message

    mismatched = plugged_ca_directory(tmp_path / "mismatched")
    shutil.copy(openssl_key(tmp_path / "stranger.key"), mismatched / "ca-key.pem")
    wrong = refused(rotation.trust, mismatched)
    assert wrong.file == str(mismatched / "ca-key.pem")
    assert "does not belong to the certificate" in wrong.message

    assert rotation.rotation.phase is Phase.STEADY and proxies.asked == 0
    assert not (tmp_path / "state" / "ca-rotation").exists()


def test_a_plugged_ca_is_trusted_then_switched_to_from_its_directory(tmp_path: Path) -> None:
    plugged = plugged_ca_directory(tmp_path / "plugged")
    rotation = opened(tmp_path / "state", Proxies())
    untrusted = refused(rotation.switch, plugged)
    assert untrusted.refusal is Refusal.NOT_TRUSTED
    rotation.trust(plugged)
    status = rotation.switch(plugged)
    assert status["issuing"]["subject"] == "CN=Plugged Intermediate,O=example.test"
    assert status["issuing"]["intermediates"] == 1
    assert [r["subject"] for r in status["roots"]][1] == "CN=Plugged Root,O=example.test"


# --- the API ----------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    rotation = opened(tmp_path / "state", Proxies())
    return TestClient(Starlette(routes=CaAPI(rotation).routes()))


def codes(response: Any) -> list[str]:
    return [d["code"] for d in response.json().get("diagnostics", [])]


def test_api_refusals_have_stable_codes_and_statuses(api: TestClient, tmp_path: Path) -> None:
    assert api.get("/apis/meshpilot.io/v1/ca").json()["phase"] == "Steady"
    only = api.post("/apis/meshpilot.io/v1/ca/retire")
    assert only.status_code == 409 and codes(only) == ["MP0042"]
    early = api.post("/apis/meshpilot.io/v1/ca/switch", json={})
    assert early.status_code == 409 and codes(early) == ["MP0040"]
    bad = api.post("/apis/meshpilot.io/v1/ca/trust", json={"caDir": str(tmp_path / "none")})
    assert bad.status_code == 422 and codes(bad) == ["MP0039"]
    assert bad.json()["diagnostics"][0]["file"] == str(tmp_path / "none")
    plugged = plugged_ca_directory(tmp_path / "plugged")
    untrusted = api.post("/apis/meshpilot.io/v1/ca/switch", json={"caDir": str(plugged)})
    assert untrusted.status_code == 422 and codes(untrusted) == ["MP0041"]

    trusted = api.post("/apis/meshpilot.io/v1/ca/trust", json={"caDir": str(plugged)})
    assert trusted.status_code == 200 and trusted.json()["phase"] == "Trusted"
    busy = api.post("/apis/meshpilot.io/v1/ca/switch", json={"spreadSeconds": 60})
    assert busy.status_code == 200
    in_use = api.post("/apis/meshpilot.io/v1/ca/retire")
    assert in_use.status_code == 409 and codes(in_use) == ["MP0043"]


@pytest.mark.parametrize(("step", "body", "says"), [
    ("trust", {"caDir": "relative/dir"}, "absolute path"),
    ("trust", {"spreadSeconds": 1}, "trust takes no field spreadSeconds"),
    ("switch", {"spreadSeconds": -1}, "from 0 to"),
    ("switch", {"spreadSeconds": "10s"}, "from 0 to"),
    ("retire", {"caDir": "/x"}, "retire takes no field caDir"),
    ("retire", [], "one JSON object"),
])
def test_api_bodies_it_does_not_take_are_400(api: TestClient, step: str, body: Any,
                                             says: str) -> None:
    response = api.post(f"/apis/meshpilot.io/v1/ca/{step}", json=body)
    assert response.status_code == 400 and says in response.json()["message"]
    assert api.get("/apis/meshpilot.io/v1/ca").json()["phase"] == "Steady"


def test_api_unknown_step_is_404(api: TestClient) -> None:
    response = api.post("/apis/meshpilot.io/v1/ca/abort")
    assert response.status_code == 404 and "trust, switch, retire" in response.json()["message"]


def test_the_cli_shows_roots_with_their_role_and_certificates(tmp_path: Path) -> None:
    rotation = opened(tmp_path, Proxies())
    rotation.trust()
    console = Console(width=250, record=True)
    for part in status_view(rotation.status()):
        console.print(part)
    text = console.export_text()
    assert "Phase: Trusted" in text and "meshpilot ca switch" in text
    assert "Workload certificates: 3" in text
    rows = [line.split() for line in text.splitlines() if "..." in line and "CN=" in line]
    assert [row[-2:] for row in rows[-2:]] == [["issuing", "3"], ["pending", "0"]], text
