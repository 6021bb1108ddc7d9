"""Field and label selectors on lists and watches. Fields: ``metadata.name`` and
``metadata.namespace``, the two every kind supports in Kubernetes and the ones kubectl
sends (``kubectl get canary myapp -w`` watches with ``fieldSelector=metadata.name=myapp``).
Labels: the equality-based terms (``kubectl get vs -l app=myapp``).

Anything else is refused (ValueError, a 400) rather than ignored: a selector that is
silently dropped would list or watch objects the client did not ask for.
"""

from __future__ import annotations

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


def label_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on an object's body for an equality-based label selector: ``k=v``,
    ``k==v``, ``k!=v``, ``k`` (has the label), ``!k`` (has not); every term must hold.
    Set-based terms (``k in (a,b)``) are refused with ValueError, not ignored."""
    terms: list[tuple[str, str | None, bool]] = []  # (label, value or None, negated)
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        if "(" in term or " " in term:
            raise ValueError(f"label selector {term!r}: only k=v, k!=v, k and !k are "
                             "supported")
        if "=" in term:
            negated = "!=" in term
            label, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
            terms.append((label, value, negated))
        else:
            terms.append((term.lstrip("!"), None, term.startswith("!")))

    def matches(body: Mapping[str, Any]) -> bool:
        labels = (body.get("metadata") or {}).get("labels") or {}
        for label, value, negated in terms:
            held = label in labels if value is None else labels.get(label) == value
            if held == negated:
                return False
        return True

    return matches
