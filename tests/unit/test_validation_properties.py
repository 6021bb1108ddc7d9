"""Property tests: validation never crashes, and every refusal is located and coded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpilot.api.loader import load_text
from meshpilot.validation import ALL_CODES, Plan, check_document, plan_apply

CODES = {c.code for c in ALL_CODES}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS: list[dict[str, Any]] = [
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "prod"},
        "spec": {
            "hosts": ["reviews"],
            "gateways": ["mesh"],
            "http": [
                {
                    "name": "canary",
                    "match": [
                        {"uri": {"prefix": "/api"}, "headers": {"x-user": {"exact": "tester"}}},
                        {"uri": {"regex": "^/v[0-9]+/.*"}},
                    ],
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                        {
                            "destination": {
                                "host": "reviews",
                                "subset": "v2",
                                "port": {"number": 9080},
                            },
                            "weight": 10,
                        },
                    ],
                    "timeout": "10s",
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                },
                {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
            ],
        },
    },
    {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "prod"},
        "spec": {
            "host": "reviews",
            "trafficPolicy": {
                "loadBalancer": {"simple": "LEAST_REQUEST"},
                "connectionPool": {
                    "tcp": {"maxConnections": 100},
                    "http": {"http1MaxPendingRequests": 10},
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 5,
                    "interval": "10s",
                    "baseEjectionTime": "3m",
                    "maxEjectionPercent": 50,
                },
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    },
    {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "Gateway",
        "metadata": {"name": "public", "namespace": "istio-system"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["*.example.com"],
                },
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["app.example.com"],
                    "tls": {"mode": "SIMPLE", "credentialName": "app-cert"},
                },
            ],
        },
    },
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "external-api"},
        "spec": {
            "hosts": ["api.example.com"],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "prod", "labels": {"app": "reviews"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
            "template": {
                "metadata": {"labels": {"app": "reviews", "version": "v1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "reviews",
                            "image": "reviews:1",
                            "ports": [{"name": "http", "containerPort": 9080}],
                        },
                    ],
                },
            },
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "prod"},
        "spec": {
            "selector": {"app": "reviews"},
            "ports": [{"name": "http", "port": 9080, "targetPort": 9080}],
        },
    },
    {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [
                    {
                        "name": "request-success-rate",
                        "thresholdRange": {"min": 99},
                        "interval": "1m",
                    },
                ],
            },
        },
    },
]


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def check_plan(p: Plan, file: str) -> None:
    assert isinstance(p, Plan)
    for d in p.diagnostics:
        assert d.code in CODES, d
    if not p.ok:
        assert p.errors
        for d in p.errors:
            assert d.file == file, d.format()


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s["kind"])
def test_seed_is_accepted(seed: dict[str, Any]) -> None:
    (loaded,) = load_text(dump(seed), "seed.yaml")
    parsed, diagnostics = check_document(loaded)
    assert diagnostics == [], [d.format() for d in diagnostics]
    assert parsed is not None
    # the VirtualService's subsets need the DestinationRule seed beside it
    rule = SEEDS[1]
    docs = [seed] if seed is rule else [seed, rule]
    p = plan_apply([("seed.yaml", "---\n".join(dump(d) for d in docs))])
    assert p.ok, [d.format() for d in p.errors]
    assert len(p.objects) == len(docs)


def test_all_seeds_together_are_accepted() -> None:
    p = plan_apply([("seeds.yaml", "---\n".join(dump(s) for s in SEEDS))])
    assert p.ok, [d.format() for d in p.errors]
    assert len(p.objects) == len(SEEDS)


# --------------------------------------------------------------------------- garbage text

FRAGMENTS = st.sampled_from(
    [
        ":",
        "-",
        "- ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "  ",
        "\t",
        "\n",
        "---\n",
        "...\n",
        "#",
        "apiVersion:",
        "kind:",
        "metadata:",
        "name:",
        "spec:",
        " v1",
        " Service",
        " networking.istio.io/v1",
        " VirtualService",
        "&a",
        "*a",
        "!!str",
        "!!python/object",
        "'",
        '"',
        "|",
        ">",
        "? ",
        "%YAML 1.1\n",
        "1",
        "-1",
        "null",
        "true",
        "0x1F",
        "~",
        "=",
        "<<: ",
        "\x00",
        "\ufeff",
        "é",
        "\r\n",
    ]
)
GARBAGE = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=40).map("".join),
)


@SETTINGS
@given(GARBAGE)
def test_garbage_never_raises(text: str) -> None:
    p = plan_apply([("f.yaml", text)])
    check_plan(p, "f.yaml")


@SETTINGS
@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=30).map("".join))
def test_garbage_after_valid_document_never_raises(tail: str) -> None:
    text = dump(SEEDS[5]) + "---\n" + tail
    check_plan(plan_apply([("f.yaml", text)]), "f.yaml")


# --------------------------------------------------------------------------- mutations

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["10x", "1m", "0", "-1s", "(?=x)", "*", "", "v1", "mesh", "HTTP"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=6,
)


def _containers(node: Any, out: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (including itself), depth first."""
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            _containers(v, out)
    elif isinstance(node, list):
        out.append(node)
        for v in node:
            _containers(v, out)
    return out


def _mangle(key: str, data: st.DataObject) -> str:
    op = data.draw(st.sampled_from(["insert", "swap", "delete", "replace"]))
    chars = list(key)
    pos = data.draw(st.integers(0, len(chars)))
    letter = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyzA_-."))
    if op == "insert" or not chars:
        chars.insert(pos, letter)
    elif op == "swap" and len(chars) > 1:
        i = min(pos, len(chars) - 2)
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    elif op == "delete":
        del chars[min(pos, len(chars) - 1)]
    else:
        chars[min(pos, len(chars) - 1)] = letter
    return "".join(chars)


def mutate(doc: dict[str, Any], data: st.DataObject) -> None:
    """Apply one random mutation somewhere inside ``doc`` (in place)."""
    # deepest containers first: hypothesis favours early choices, and deep fields are
    # where the interesting rules live
    targets = [c for c in _containers(doc, []) if c][::-1]
    target = data.draw(st.sampled_from(targets))
    if isinstance(target, dict):
        key = data.draw(st.sampled_from(sorted(target, reverse=True)))
        op = data.draw(st.sampled_from(["delete", "rename", "replace"]))
        if op == "delete":
            del target[key]
        elif op == "rename":
            value = target.pop(key)
            target[_mangle(key, data)] = value
        else:
            target[key] = data.draw(JSON_VALUES)
    else:
        i = data.draw(st.integers(0, len(target) - 1))
        op = data.draw(st.sampled_from(["duplicate", "replace", "delete"]))
        if op == "duplicate":
            target.insert(i, copy.deepcopy(target[i]))
        elif op == "replace":
            target[i] = data.draw(JSON_VALUES)
        else:
            del target[i]


@st.composite
def mutated_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    data = draw(st.data())
    picks = draw(st.lists(st.integers(0, len(SEEDS) - 1), min_size=1, max_size=3, unique=True))
    if 0 in picks and 1 not in picks:
        picks.append(1)  # the VirtualService's subsets are defined by the DestinationRule
    docs = []
    for i in picks:
        doc = copy.deepcopy(SEEDS[i])
        for _ in range(draw(st.integers(0, 3))):
            mutate(doc, data)
        docs.append(doc)
    return docs


@SETTINGS
@given(mutated_documents())
def test_mutated_documents_are_accepted_or_located(docs: list[dict[str, Any]]) -> None:
    text = "---\n".join(dump(d) for d in docs)
    p = plan_apply([("m.yaml", text)])
    check_plan(p, "m.yaml")
    if p.ok:
        assert len(p.objects) == len(docs)
    else:
        for d in p.errors:
            assert d.code in CODES
            assert d.file == "m.yaml"
            assert d.line is not None and d.line >= 1
            assert d.column is None or d.column >= 1
            assert d.path or d.message
    for d in p.diagnostics:
        assert d.format()  # formatting never fails either


@SETTINGS
@given(mutated_documents())
def test_accepted_document_revalidates_identically(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        (loaded,) = load_text(dump(doc), "d.yaml")
        parsed, diagnostics = check_document(loaded)
        if parsed is None:
            assert diagnostics
            assert all(d.is_error and d.code in CODES for d in diagnostics)
            continue
        assert diagnostics == []
        # the body (namespace filled in) survives a YAML round trip unchanged
        (again,) = load_text(dump(parsed.body), "d.yaml")
        reparsed, found = check_document(again)
        assert found == [], [d.format() for d in found]
        assert reparsed is not None
        assert reparsed.key == parsed.key
        assert reparsed.body == parsed.body
        assert reparsed.model == parsed.model
