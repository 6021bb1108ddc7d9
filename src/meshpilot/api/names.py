"""Object names, by the rules Kubernetes gives each kind.

A name ends up in DNS names (``NAME.NS.svc.cluster.local``), Envoy cluster names and
file names, so it is checked when it comes in, and a refusal says which rule applies,
what in the name breaks it, and what a valid name looks like:

* most kinds: a DNS subdomain (RFC 1123) — at most 253 characters, dot-separated
  labels of lowercase letters, digits and '-', each starting and ending with a letter
  or digit (so ``a..b`` and ``a.-b`` are refused);
* Service: a DNS label (RFC 1035) — at most 63 characters, lowercase letters, digits
  and '-', starting with a letter and ending with a letter or digit: it is the first
  label of the Service's host name;
* a namespace: a DNS label (RFC 1123) — as a Service name, but it may start with a
  digit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    title: str  # "a DNS subdomain (RFC 1123)"
    max_length: int
    summary: str  # the rule, in words
    example: str
    labels: bool  # dot-separated labels allowed
    letter_first: bool  # each label must start with a letter


SUBDOMAIN = NameRule(
    "a DNS subdomain (RFC 1123)", 253,
    "lowercase letters, digits, '-' and '.', each part between dots starting and ending "
    "with a letter or digit", "reviews-v2.canary", labels=True, letter_first=False)
SERVICE_LABEL = NameRule(
    "a DNS label (RFC 1035)", 63,
    "lowercase letters, digits and '-', starting with a letter and ending with a letter "
    "or digit", "reviews-v2", labels=False, letter_first=True)
NAMESPACE_LABEL = NameRule(
    "a DNS label (RFC 1123)", 63,
    "lowercase letters, digits and '-', starting and ending with a letter or digit",
    "team-a", labels=False, letter_first=False)

_LABEL_CHARS = re.compile(r"[a-z0-9-]*")


def _label_problem(label: str, rule: NameRule) -> str:
    """What is wrong with one dot-separated part of a name, or ""."""
    if not label:
        return "it has an empty part between dots" if rule.labels else "it is empty"
    bad = _LABEL_CHARS.fullmatch(label) is None
    if bad:
        char = next(c for c in label if not (c.isascii() and (c.islower() or c.isdigit()
                                                                or c == "-")))
        return f"{char!r} is not allowed"
    if rule.letter_first and not label[0].isalpha():
        return f"it starts with {label[0]!r}, not a letter"
    if label[0] == "-" or label[-1] == "-":
        return "a part starts or ends with '-'" if rule.labels else "it starts or ends with '-'"
    return ""


def name_problem(name: str, rule: NameRule) -> str:
    """Why ``name`` breaks ``rule``, or "" when it is valid."""
    if len(name) > rule.max_length:
        return f"it has {len(name)} characters, more than {rule.max_length}"
    if not rule.labels and "." in name:
        return "'.' is not allowed"
    for label in name.split(".") if rule.labels else (name,):
        problem = _label_problem(label, rule)
        if problem:
            return problem
    return ""


def explain(what: str, name: str, rule: NameRule, problem: str) -> str:
    """The refusal: which name, the rule, what breaks it, a valid example."""
    return (f"{what} {name!r} is not valid: {problem}. It must be {rule.title}: at most "
            f"{rule.max_length} characters, {rule.summary} (for example "
            f"{rule.example!r})")
