"""The prometheus metric provider against a real Prometheus serving HTTPS with basic
auth (its ``--web.config.file``), as Flagger's provider meets a secured Prometheus:
``secretRef`` credentials (``username``/``password``) are sent, ``insecureSkipVerify``
accepts a certificate no root vouches for, and each missing piece fails clearly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.e2e.telemetry_helpers import Prometheus
from tests.tls_pairs import certificate, key_pem, pem

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.prometheus import PrometheusProvider

USER, PASSWORD = "flagger", "correct horse battery staple"
CREDENTIALS = {"username": USER.encode(), "password": PASSWORD.encode()}


def _private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("prom-secured")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _private(tmp / "server.crt", pem(certificate("127.0.0.1", key)))
    key_file = _private(tmp / "server.key", key_pem(key))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = _private(tmp / "web.yml", (
        f"tls_server_config: {{cert_file: '{cert}', key_file: '{key_file}'}}\n"
        f"basic_auth_users: {{{USER}: '{hashed}'}}\n").encode())
    with Prometheus(tmp, None, web_config=web, https=True, auth=(USER, PASSWORD)) as prom:
        yield prom


def _provider(prom: Prometheus, *, skip_verify: bool = True) -> MetricTemplateProvider:
    return MetricTemplateProvider(type="prometheus", address=prom.url,
                                  insecure_skip_verify=skip_verify)


def test_credentials_and_skip_verify_reach_a_secured_prometheus(secured: Prometheus) -> None:
    assert PrometheusProvider().query(_provider(secured), "vector(7)", CREDENTIALS) == 7.0


def test_without_credentials_or_with_wrong_ones_prometheus_refuses(
        secured: Prometheus) -> None:
    provider = PrometheusProvider()
    with pytest.raises(MetricQueryError, match="answered 401"):
        provider.query(_provider(secured), "vector(7)")
    wrong = {**CREDENTIALS, "password": b"guess"}
    with pytest.raises(MetricQueryError, match="answered 401"):
        provider.query(_provider(secured), "vector(7)", wrong)


def test_the_certificate_is_verified_unless_skip_verify_says_otherwise(
        secured: Prometheus) -> None:
    with pytest.raises(MetricQueryError, match="CERTIFICATE_VERIFY_FAILED"):
        PrometheusProvider().query(_provider(secured, skip_verify=False), "vector(7)",
                                   CREDENTIALS)


def test_a_secret_without_the_keys_is_named_before_any_request(secured: Prometheus) -> None:
    with pytest.raises(MetricQueryError, match="token, or username and password"):
        PrometheusProvider().query(_provider(secured), "vector(7)", {"username": b"flagger"})
