"""Object names by kind: which are refused, and what the refusal says is wrong."""

from __future__ import annotations

import pytest

from meshpilot.api.names import (
    NAMESPACE_LABEL,
    SERVICE_LABEL,
    SUBDOMAIN,
    NameRule,
    name_problem,
)

VALID = [
    (SUBDOMAIN, "a"), (SUBDOMAIN, "reviews-v2.canary"), (SUBDOMAIN, "0abc"),
    (SUBDOMAIN, ".".join(["a" * 63] * 4)[:253]), (SERVICE_LABEL, "a" * 63),
    (SERVICE_LABEL, "a-1"), (NAMESPACE_LABEL, "0team"),
]
INVALID = [
    (SUBDOMAIN, "", "it has an empty part between dots"),
    (SUBDOMAIN, "a..b", "it has an empty part between dots"),
    (SUBDOMAIN, "a.", "it has an empty part between dots"),
    (SUBDOMAIN, "a.-b", "a part starts or ends with '-'"),
    (SUBDOMAIN, "a_b", "'_' is not allowed"),
    (SUBDOMAIN, "é", "'é' is not allowed"),
    (SUBDOMAIN, "a" * 254, "it has 254 characters, more than 253"),
    (SERVICE_LABEL, "a" * 64, "it has 64 characters, more than 63"),
    (SERVICE_LABEL, "9lives", "it starts with '9', not a letter"),
    (SERVICE_LABEL, "a.b", "'.' is not allowed"),
    (SERVICE_LABEL, "ab-", "it starts or ends with '-'"),
    (NAMESPACE_LABEL, "Team", "'T' is not allowed"),
]


@pytest.mark.parametrize(("rule", "name"), VALID)
def test_valid_names(rule: NameRule, name: str) -> None:
    assert name_problem(name, rule) == ""


@pytest.mark.parametrize(("rule", "name", "why"), INVALID)
def test_invalid_names_say_why(rule: NameRule, name: str, why: str) -> None:
    assert name_problem(name, rule) == why
