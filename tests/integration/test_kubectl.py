"""The real ``kubectl`` against a real control plane, through the kubeconfig it writes.

One config-plane-only control plane (``--no-mesh --tls``: kubectl sends its bearer token
over HTTPS only) serves the whole module; each test works in a namespace of its own.
A missing kubectl fails these tests: they are the proof that kubectl works.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import ControlPlane, clean_env

KUBECTL = "kubectl"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("kubectl") / "state", ["--no-mesh", "--tls"])
    try:
        yield cp.start()
    finally:
        cp.stop()


def kubectl(plane: ControlPlane, *args: str, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl with the control plane's kubeconfig, and a discovery cache of
    its own (``HOME``) so no other run's cache is read."""
    binary = shutil.which(KUBECTL)
    assert binary, "kubectl is not on PATH: these tests need the real kubectl binary"
    home = plane.state_dir.parent / "home"
    home.mkdir(exist_ok=True)
    env = clean_env(KUBECONFIG=str(plane.state_dir / "kubeconfig"), HOME=str(home))
    done = subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                          input=input, timeout=30)
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


# --- kubeconfig and discovery ---------------------------------------------------------

def test_the_kubeconfig_names_the_api_its_token_and_context(plane: ControlPlane) -> None:
    path = plane.state_dir / "kubeconfig"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "meshpilot"
    assert config["clusters"][0]["cluster"]["server"] == plane.api
    assert config["clusters"][0]["cluster"]["certificate-authority"] == str(
        plane.state_dir / "api-ca.pem")
    assert config["users"][0]["user"]["token"] == plane.token
    assert "Server Version: v1.32" in kubectl(plane, "version").stdout


def test_a_wrong_token_is_refused(plane: ControlPlane, tmp_path: Path) -> None:
    config = yaml.safe_load((plane.state_dir / "kubeconfig").read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    wrong = tmp_path / "kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    env = clean_env(KUBECONFIG=str(wrong), HOME=str(tmp_path))
    done = subprocess.run([KUBECTL, "get", "--raw", "/version"], capture_output=True,
                          text=True, env=env, timeout=30)
    assert done.returncode != 0
    assert "You must be logged in" in done.stderr
    assert "missing or wrong bearer token" in done.stderr


def test_api_resources_lists_short_names_and_categories(plane: ControlPlane) -> None:
    rows = {line.split()[0]: line.split() for line in
            kubectl(plane, "api-resources", "--no-headers").stdout.splitlines()}
    for plural, short in [("virtualservices", "vs"), ("destinationrules", "dr"),
                          ("gateways", "gw"), ("serviceentries", "se"),
                          ("peerauthentications", "pa"), ("authorizationpolicies", "ap"),
                          ("requestauthentications", "ra"), ("canaries", "canary"),
                          ("deployments", "deploy"), ("services", "svc")]:
        assert rows[plural][1] == short, rows[plural]
    istio = kubectl(plane, "api-resources", "--categories=istio-io", "-o", "name").stdout
    assert "virtualservices.networking.istio.io" in istio.split()
    assert "peerauthentications.security.istio.io" in istio.split()
