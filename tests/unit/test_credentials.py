"""Secret and ServiceAccount: models, the TLS Secret check, and that no diagnostic ever
repeats a Secret's values."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.tls_pairs import CA, CHAIN, KEY, LEAF, LEAF_KEY, OTHER_KEY, b64
from tests.tls_pairs import key_pem as _key_pem
from tests.tls_pairs import pem as _pem

from meshpilot.api.credentials import Secret
from meshpilot.api.kinds import by_kind, by_name
from meshpilot.validation import Diagnostic, Plan, plan_apply


def secret(data: dict[str, Any] | None = None, *, string_data: dict[str, Any] | None = None,
           type_: str | None = "kubernetes.io/tls", **extra: Any) -> str:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "shop-cert", "namespace": "shop"}, **extra}
    if type_ is not None:
        body["type"] = type_
    if data is not None:
        body["data"] = data
    if string_data is not None:
        body["stringData"] = string_data
    return yaml.safe_dump(body, sort_keys=False)


def plan(text: str) -> Plan:
    return plan_apply([("secret.yaml", text)])


def only(p: Plan, code: str) -> Diagnostic:
    found = [d for d in p.diagnostics if d.code == code]
    assert len(found) == 1, [d.format() for d in p.diagnostics]
    return found[0]


def tls(crt: bytes = CHAIN, key: bytes = KEY, **more: bytes) -> dict[str, str]:
    return {"tls.crt": b64(crt), "tls.key": b64(key), **{k: b64(v) for k, v in more.items()}}


# --- TLS Secrets ----------------------------------------------------------------------


def test_a_matching_chain_and_key_apply() -> None:
    p = plan(secret(tls(**{"ca.crt": _pem(CA)})))
    assert p.ok and p.diagnostics == [], [d.format() for d in p.diagnostics]
    model = p.objects[0].model
    assert isinstance(model, Secret)
    assert model.value("tls.key") == KEY
    assert set(model.decoded()) == {"tls.crt", "tls.key", "ca.crt"}


def test_string_data_counts_and_wins_over_data() -> None:
    assert plan(secret(string_data={"tls.crt": CHAIN.decode(), "tls.key": KEY.decode()})).ok
    mixed = secret({"tls.crt": b64(CHAIN), "tls.key": b64(_key_pem(OTHER_KEY))},
                   string_data={"tls.key": KEY.decode()})
    p = plan(mixed)
    assert p.ok, [d.format() for d in p.diagnostics]
    model = p.objects[0].model
    assert isinstance(model, Secret) and model.value("tls.key") == KEY


def test_key_of_another_certificate_is_refused_naming_the_key() -> None:
    p = plan(secret(tls(key=_key_pem(OTHER_KEY))))
    d = only(p, "MP0030")
    assert (d.path, d.file, d.line) == ("data.tls.key", "secret.yaml", 9)
    assert d.message.startswith("the private key in data.tls.key does not match the first "
                                "certificate in data.tls.crt")
    assert p.objects == []


def test_chain_in_the_wrong_order_says_which_certificate_the_key_is_for() -> None:
    d = only(plan(secret(tls(crt=_pem(CA, LEAF)))), "MP0030")
    assert d.path == "data.tls.key"
    assert "matches certificate 2 of data.tls.crt" in d.message and "first" in d.message


def test_key_mismatch_in_string_data_names_string_data() -> None:
    other = _key_pem(OTHER_KEY).decode()
    d = only(plan(secret(string_data={"tls.crt": CHAIN.decode(), "tls.key": other})), "MP0030")
    assert d.path == "stringData.tls.key" and "key in stringData.tls.key " in d.message


@pytest.mark.parametrize(("data", "path", "needle"), [
    (tls(crt=b"hello"), "data.tls.crt", "is not PEM certificates"),
    (tls(crt=KEY), "data.tls.crt", "is not PEM certificates"),
    (tls(key=CHAIN), "data.tls.key", "is not a PEM private key"),
    (tls(key=_key_pem(LEAF_KEY, b"s3cret")), "data.tls.key", "is an encrypted private key"),
    (tls(**{"ca.crt": b"not a certificate"}), "data.ca.crt", "is not PEM certificates"),
])
def test_unparsable_pem_is_refused(data: dict[str, str], path: str, needle: str) -> None:
    d = only(plan(secret(data)), "MP0030")
    assert d.path == path and d.message.startswith(f"the value of {path} {needle}")


@pytest.mark.parametrize("missing", ["tls.crt", "tls.key"])
def test_certificate_and_key_are_required(missing: str) -> None:
    data = tls()
    del data[missing]
    d = only(plan(secret(data)), "MP0011")
    assert d.path == "data" and f"data.{missing}" in d.message


def test_value_that_is_not_base64_and_a_bad_certificate_are_both_reported() -> None:
    data = {**tls(crt=b"hello"), "tls.key": "%%% not base64 %%%"}
    p = plan(secret(data))
    assert sorted((d.code, d.path) for d in p.diagnostics) == [
        ("MP0017", "data.tls.key"), ("MP0030", "data.tls.crt")]
    assert "base64" in only(p, "MP0017").message


def test_opaque_and_generic_secrets_hold_anything() -> None:
    for type_ in ("Opaque", "generic", None):
        p = plan(secret({"token": b64(b"anything")}, type_=type_))
        assert p.ok, [d.format() for d in p.diagnostics]
    model = plan(secret({"a": b64(b"x")}, type_=None)).objects[0].model
    assert isinstance(model, Secret) and model.type == "Opaque"


def test_unknown_type_and_fields_are_refused() -> None:
    d = only(plan(secret({}, type_="kubernetes.io/ssh-auth")), "MP0017")
    assert d.path == "type"
    for valid in ("kubernetes.io/tls", "Opaque", "generic"):
        assert valid in d.message
    d = only(plan(secret({}, type_="Opaque", immutable=True)), "MP0010")
    assert d.path == "immutable" and "stringData" in d.message and "data" in d.message


def test_key_names_follow_kubernetes() -> None:
    d = only(plan(secret({"tls crt": b64(b"x")}, type_="Opaque")), "MP0017")
    assert d.path == "data.tls crt" and "letters, digits" in d.message


# --- values are never echoed ----------------------------------------------------------

SECRET_TEXT = "hunter2-very-secret"


@pytest.mark.parametrize("text", [
    secret({"tls.crt": b64(CHAIN), "tls.key": 12345}),
    secret({"tls.crt": b64(CHAIN), "tls.key": SECRET_TEXT}),
    secret(string_data={"tls.crt": CHAIN.decode(), "tls.key": 12345}),
    secret(string_data={"password": [SECRET_TEXT]}, type_="Opaque"),
    secret(string_data={"tls.crt": SECRET_TEXT, "tls.key": SECRET_TEXT}),
    secret(tls(key=_key_pem(OTHER_KEY))),
    secret(tls(crt=SECRET_TEXT.encode())),
    secret({"token": b64(SECRET_TEXT.encode())}, type_="Opaque", immutable=SECRET_TEXT),
])
def test_no_diagnostic_repeats_a_value(text: str) -> None:
    p = plan(text)
    assert not p.ok
    shown = "\n".join(d.format() for d in p.diagnostics)
    body = yaml.safe_load(text)
    values = [*(body.get("data") or {}).values(), *(body.get("stringData") or {}).values()]
    for value in values:
        for piece in (value if isinstance(value, list) else [value]):
            assert str(piece) not in shown, shown
    assert SECRET_TEXT not in shown and "12345" not in shown
    for line in KEY.decode().splitlines()[1:-1]:
        assert line not in shown


# --- ServiceAccount -------------------------------------------------------------------


def test_service_account_with_the_usual_fields() -> None:
    text = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: orders, namespace: shop}
automountServiceAccountToken: false
secrets: [{name: orders-token}]
imagePullSecrets: [{name: registry}]
"""
    p = plan(text)
    assert p.ok and p.diagnostics == [], [d.format() for d in p.diagnostics]
    assert p.objects[0].label == "ServiceAccount shop/orders"
    assert plan("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bare}\n").ok


def test_service_account_unknown_field_lists_the_valid_ones() -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nautomount: false\n"
    d = only(plan(text), "MP0010")
    assert d.path == "automount" and d.line == 4
    for field in ("automountServiceAccountToken", "imagePullSecrets", "secrets"):
        assert field in d.message


def test_kinds_are_served_in_the_core_group() -> None:
    assert by_name("sa").kind == "ServiceAccount"
    assert by_name("secrets").kind == "Secret" and by_name("secret").kind == "Secret"
    assert by_kind("Secret").collection_path("shop") == "/api/v1/namespaces/shop/secrets"
    assert (by_kind("ServiceAccount").object_path("shop", "orders")
            == "/api/v1/namespaces/shop/serviceaccounts/orders")


def test_get_shows_type_and_key_count_never_values() -> None:
    from meshpilot.cli.columns import columns_for

    body = yaml.safe_load(secret(tls(), string_data={"ca.crt": _pem(CA).decode()}))
    cells = [(title, show(body)) for title, show in columns_for("Secret")]
    assert cells == [("TYPE", "kubernetes.io/tls"), ("DATA", "3")]
