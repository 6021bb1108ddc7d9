"""Field selectors as kubectl sends them."""

from __future__ import annotations

import pytest

from meshpilot.api.identity import ObjectKey
from meshpilot.server.kube_selectors import field_selector, label_selector

A = ObjectKey("flagger.app", "Canary", "default", "myapp")
B = ObjectKey("flagger.app", "Canary", "prod", "other")


def test_name_and_namespace_terms() -> None:
    assert field_selector("metadata.name=myapp")(A)
    assert not field_selector("metadata.name==myapp")(B)
    assert field_selector("metadata.name!=myapp,metadata.namespace=prod")(B)
    assert field_selector(None)(A) and field_selector("")(B)


@pytest.mark.parametrize("text", ["spec.host=x", "metadata.name", "status.phase!=Failed"])
def test_other_selectors_are_refused_not_ignored(text: str) -> None:
    with pytest.raises(ValueError, match=r"only metadata\.name and metadata\.namespace"):
        field_selector(text)


def test_label_selector_equality_terms() -> None:
    web = {"metadata": {"labels": {"app": "web", "tier": "front"}}}
    assert label_selector("app=web,tier")(web)
    assert label_selector("app==web,!canary")(web)
    assert not label_selector("app!=web")(web)
    assert not label_selector("canary")({"metadata": {}})
    with pytest.raises(ValueError):
        label_selector("app in (web,api)")
