"""``--store`` URLs: the SQLite default, etcd members and prefix, and clear refusals."""

from __future__ import annotations

import pytest

from meshpilot.store.url import DEFAULT_PREFIX, StoreSpec, parse_store_url


def test_no_url_is_the_sqlite_file() -> None:
    assert parse_store_url(None) == StoreSpec() == parse_store_url("sqlite")
    assert not StoreSpec().is_etcd


def test_etcd_members_and_prefix() -> None:
    spec = parse_store_url("etcd://127.0.0.1:2379,127.0.0.2:2379,[::1]:2379/prod/mesh/")
    assert spec.endpoints == ("http://127.0.0.1:2379", "http://127.0.0.2:2379",
                              "http://[::1]:2379")
    assert spec.prefix == "/prod/mesh/"
    assert parse_store_url("etcd://db:2379").prefix == DEFAULT_PREFIX


@pytest.mark.parametrize(("url", "says"), [
    ("etcd://db", "'db' is not HOST:PORT"),
    ("etcd://db:2379,", "'' is not HOST:PORT"),
    ("etcd://db:99999", "'db:99999' is not HOST:PORT"),
    ("http://db:2379", "expected etcd://HOST:2379"),
    ("postgres", "expected etcd://HOST:2379"),
])
def test_refusals_name_the_bad_part_and_the_form(url: str, says: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_store_url(url)
    assert says in str(exc.value) and url in str(exc.value)
