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


def test_label_selector_set_terms() -> None:
    """Kubernetes' set-based requirements: ``in`` needs the label with one of the
    values; ``notin`` and ``!=`` also hold for an object without the label."""
    web = {"metadata": {"labels": {"app": "web", "tier": "front"}}}
    bare: dict[str, object] = {"metadata": {}}
    assert label_selector("app in (web,api)")(web)
    assert label_selector("app in (api, web), tier notin (back)")(web)
    assert not label_selector("app notin (web)")(web)
    assert not label_selector("app in (api)")(bare)
    assert label_selector("app notin (api),app!=api,!app")(bare)
    assert label_selector("app in (web),!canary,tier!=back")(web)


@pytest.mark.parametrize("text", ["app in web", "app in (web", "a b", "app=(x)", "=x"])
def test_a_label_selector_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="label selector"):
        label_selector(text)
