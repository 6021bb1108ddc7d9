"""The graphite metric provider against a real Graphite: Debian's carbon-cache storing
whisper files and graphite-web rendering them, started once for this module.

Each case follows Flagger's graphite provider (``pkg/metrics/providers/graphite.go``):
the template's query is the parameter list of ``/render`` with white space folded and
``format=json`` forced; the answer is the last non-null datapoint over the series in
the order returned; no such point is "no values"; a ``secretRef`` Secret's ``username``
and ``password`` are sent as basic auth; an error status fails the query.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.metric_backends import GRAPHITE_PASSWORD, GRAPHITE_USER, Graphite, now
from tests.provider_rollouts import ProviderHarness, secret, template

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.graphite import GraphiteProvider

CREDENTIALS = {"username": GRAPHITE_USER.encode(), "password": GRAPHITE_PASSWORD.encode()}


@pytest.fixture(scope="module")
def graphite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graphite]:
    with Graphite(tmp_path_factory.mktemp("graphite")) as server:
        yield server


def _provider(address: str) -> MetricTemplateProvider:
    return MetricTemplateProvider(type="graphite", address=address)


def test_the_answer_is_the_last_non_null_point_of_the_last_series(graphite: Graphite) -> None:
    """Flagger walks every series in the order Graphite returns them (here by name) and
    each one's points oldest first, keeping the last non-null value: so the last
    series' newest point wins, not the largest or the newest overall, and the nulls
    Graphite pads each series with up to ``until`` are skipped."""
    t = now()
    graphite.feed([("mp.last.a", 5, t - 4), ("mp.last.a", 7, t - 3),
                   ("mp.last.b", 1, t - 6), ("mp.last.b", 2, t - 5)])
    value = GraphiteProvider().query(_provider(graphite.url),
                                     "target=mp.last.*&from=-1min")
    assert value == 2.0


def test_a_target_written_over_several_lines_is_one_target(graphite: Graphite) -> None:
    """Flagger's documented template spreads ``summarize(asPercent(sumSeries(...)))``
    over lines; runs of white space become one space before the query is sent."""
    t = now()
    graphite.feed([("mp.multi.podinfo.errors", 3, t - 2),
                   ("mp.multi.podinfo.requests", 60, t - 2)])
    query = """target=asPercent(
                 sumSeries(mp.multi.podinfo.errors),
                 sumSeries(mp.multi.podinfo.requests)
               )&from=-1min
            """
    assert GraphiteProvider().query(_provider(graphite.url), query) == 5.0


def test_no_series_or_only_nulls_is_no_data(graphite: Graphite) -> None:
    """Flagger's ErrNoValuesFound: nothing stored under the target, or only nulls in the
    window (a point older than ``from``), is no data, not zero."""
    t = now()
    graphite.feed([("mp.old.errors", 9, t - 120)])
    provider = GraphiteProvider()
    assert provider.query(_provider(graphite.url), "target=mp.nothing.here&from=-1min") is None
    assert provider.query(_provider(graphite.url), "target=mp.old.errors&from=-1min") is None
    assert provider.query(_provider(graphite.url), "target=mp.old.errors&from=-5min") == 9.0


def test_the_query_s_own_format_is_replaced_by_json(graphite: Graphite) -> None:
    """Flagger sets ``format=json`` whatever the query says (MP2049 warns at apply)."""
    t = now()
    graphite.feed([("mp.format.x", 4, t - 2)])
    assert GraphiteProvider().query(_provider(graphite.url),
                                    "target=mp.format.x&from=-1min&format=csv") == 4.0


def test_secret_credentials_are_sent_as_basic_auth(graphite: Graphite) -> None:
    """graphite-web behind basic auth: Flagger sends the Secret's username and password;
    without them, or with a wrong password, the server's 401 fails the query."""
    t = now()
    graphite.feed([("mp.auth.x", 11, t - 2)])
    provider, query = GraphiteProvider(), "target=mp.auth.x&from=-1min"
    assert provider.query(_provider(graphite.auth_url), query, CREDENTIALS) == 11.0
    with pytest.raises(MetricQueryError, match="graphite answered 401"):
        provider.query(_provider(graphite.auth_url), query)
    with pytest.raises(MetricQueryError, match="graphite answered 401"):
        provider.query(_provider(graphite.auth_url), query,
                       {**CREDENTIALS, "password": b"guess"})


def test_skip_verify_accepts_a_certificate_no_root_vouches_for(graphite: Graphite) -> None:
    """Flagger's graphite provider honours ``insecureSkipVerify``; without it the
    certificate is verified and the query fails."""
    t = now()
    graphite.feed([("mp.tls.x", 3, t - 2)])
    provider, query = GraphiteProvider(), "target=mp.tls.x&from=-1min"
    skip = MetricTemplateProvider(type="graphite", address=graphite.tls_url,
                                  insecure_skip_verify=True)
    assert provider.query(skip, query) == 3.0
    with pytest.raises(MetricQueryError, match="CERTIFICATE_VERIFY_FAILED"):
        provider.query(_provider(graphite.tls_url), query)


def test_a_secret_without_both_keys_fails_before_any_request(graphite: Graphite) -> None:
    """Flagger refuses a graphite Secret lacking a username or a password."""
    with pytest.raises(MetricQueryError, match="secretRef Secret has no password"):
        GraphiteProvider().query(_provider(graphite.auth_url), "target=x",
                                 {"username": b"flagger"})


def test_graphite_s_error_status_fails_the_query(graphite: Graphite) -> None:
    """Flagger turns a status of 400 or more into an error carrying the body."""
    with pytest.raises(MetricQueryError, match=r"graphite answered [45]\d\d"):
        GraphiteProvider().query(_provider(graphite.url), "target=noSuchFunction(mp.x)")


def test_an_address_nothing_listens_on_fails_the_query(graphite: Graphite) -> None:
    """An unreachable Graphite is an error naming the address, within the timeout."""
    address = graphite.url.rsplit(":", 1)[0] + ":1"
    with pytest.raises(MetricQueryError, match=f"graphite at {address} did not answer"):
        GraphiteProvider(timeout=2.0).query(_provider(address), "target=mp.x")


ERROR_PERCENT = """target=asPercent(
    sumSeries(mp.rollout.{{ target }}.errors),
    sumSeries(mp.rollout.{{ target }}.requests)
  )&from=-{{ interval }}"""


def test_a_graphite_template_check_promotes_and_rolls_back(graphite: Graphite) -> None:
    """A Canary whose one check is a graphite MetricTemplate behind basic auth (Flagger's
    "Graphite authentication": a secretRef in the template's namespace), stepped by the
    rollout controller with the real provider: 0.5 % errors is promoted, 5 % is rolled
    back with the check and its value named. ``{{ interval }}`` is rendered as Graphite
    spells time (``1min``, ``30s``; its ``m`` is not minutes)."""
    h = ProviderHarness({"name": "error-rate", "templateRef": {"name": "graphite-errors"},
                         "thresholdRange": {"max": 1}, "interval": "1m"})
    h.cluster.put(template("graphite-errors", {"type": "graphite",
                                               "address": graphite.auth_url,
                                               "secretRef": {"name": "graphite-auth"}},
                           ERROR_PERCENT))
    h.cluster.put(secret("graphite-auth", {"username": GRAPHITE_USER,
                                           "password": GRAPHITE_PASSWORD}))
    h.initialize()
    graphite.feed([("mp.rollout.podinfo.errors", 1, now() - 1),
                   ("mp.rollout.podinfo.requests", 200, now() - 1)])
    good = h.rollout("v2")
    assert good["phase"] == "Succeeded", h.messages()
    assert [(c["name"], c["verdict"], c["value"]) for c in good["checks"]] == [
        ("error-rate", "pass", 0.5)]
    t = now()
    graphite.feed([("mp.rollout.podinfo.errors", 10, t), ("mp.rollout.podinfo.requests", 200, t)])
    bad = h.rollout("v3")
    assert bad["phase"] == "Failed", h.messages()
    failed = [(c["name"], c["value"]) for c in bad["checks"] if c["verdict"] == "fail"]
    assert failed == [("error-rate", 5.0)]
    assert "error-rate" in bad["history"][-1]["reason"]
    assert h.primary_image() == "podinfo:v2"
