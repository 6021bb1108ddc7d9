"""Field and label selectors on lists and watches. Fields: ``metadata.name`` and
``metadata.namespace``, the two every kind supports in Kubernetes and the ones kubectl
sends (``kubectl get canary myapp -w`` watches with ``fieldSelector=metadata.name=myapp``).
Labels: the equality-based and set-based terms (``kubectl get vs -l app=myapp``,
``-l 'version in (v1,v2)',!canary``).

Anything else is refused (ValueError, a 400) rather than ignored: a selector that is
silently dropped would list or watch objects the client did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from meshpilot.api.identity import ObjectKey

_FIELDS = ("metadata.name", "metadata.namespace")


def field_selector(text: str | None) -> Callable[[ObjectKey], bool]:
    """A predicate on object keys for a selector such as ``metadata.name=a,
    metadata.namespace!=b`` (``=``, ``==`` and ``!=``, every term must hold)."""
    terms: list[tuple[str, str, bool]] = []
    for term in (text or "").split(","):
        if not term.strip():
            continue
        negated = "!=" in term
        field, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        field = field.strip()
        if field not in _FIELDS or not _:
            raise ValueError(f"field selector {term.strip()!r}: only "
                             f"{' and '.join(_FIELDS)} with =, == or != are supported")
        terms.append((field, value.strip(), negated))

    def matches(key: ObjectKey) -> bool:
        for field, value, negated in terms:
            actual = key.name if field == "metadata.name" else key.namespace
            if (actual == value) == negated:
                return False
        return True

    return matches


_KEY = r"[A-Za-z0-9][A-Za-z0-9_./-]*"
_VALUE = r"[A-Za-z0-9_.-]*"
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")

LabelTerm = Callable[[Mapping[str, str]], bool]


def _terms(text: str) -> list[str]:
    """The selector's terms: split at the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [t for t in terms if t]


def _label_term(term: str) -> LabelTerm:
    """One term as a predicate on labels; ValueError naming the forms if it is none."""
    if found := _SET.match(term):
        label, op, raw = found.groups()
        values = {v.strip() for v in raw.split(",")}
        if not all(re.fullmatch(_VALUE, v) for v in values) or values == {""}:
            raise ValueError(f"label selector {term!r}: the values in (...) are label values")
        if op == "in":
            return lambda labels: labels.get(label) in values
        return lambda labels: labels.get(label) not in values
    if found := _EQUALITY.match(term):
        label, op, value = found.groups()
        if op == "!=":
            return lambda labels: labels.get(label) != value
        return lambda labels: labels.get(label) == value
    if found := _EXISTS.match(term):
        negated, label = found.groups()
        return lambda labels: (label in labels) != bool(negated)
    raise ValueError(f"label selector {term!r}: use k=v, k==v, k!=v, k, !k, "
                     "k in (v1,v2) or k notin (v1,v2)")


def label_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on an object's body for a Kubernetes label selector, every term of
    which must hold: equality (``k=v``, ``k==v``, ``k!=v``: absent counts as not v),
    existence (``k``, ``!k``) and set terms (``k in (a,b)``; ``k notin (a,b)`` holds
    for an object without k too), as the API server reads them."""
    terms = [_label_term(t) for t in _terms(text or "")]

    def matches(body: Mapping[str, Any]) -> bool:
        labels = (body.get("metadata") or {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return matches
